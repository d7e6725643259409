"""Pseudo-label rules: posteriors, per-class selection, pools and their fusion."""
