"""Experiment matrices over dvc exp and the tables made from them."""
