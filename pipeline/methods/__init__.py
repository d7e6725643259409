"""Methods, one file each; `pipeline.methods.catalog` imports them all and builds one by name."""
