"""Where and how work runs: devices, thread counts, and the compute backends that run shards."""
