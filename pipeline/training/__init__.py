"""Prompt learning: the loop, rounds, batching, losses, learners, checkpoints."""
