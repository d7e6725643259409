"""The check stage's library: fingerprints of the inputs outside the repository."""
