"""Thin Typer commands, one per DVC stage: parse params, call `pipeline`, write artifacts."""
