"""The small core every stage shares: errors, paths, artifact formats, label sets, the training pool, plots."""
