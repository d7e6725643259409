"""The params schema (one pydantic model, validated at load) and the reference protocols."""
