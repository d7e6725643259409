"""Metrics on the test split."""
