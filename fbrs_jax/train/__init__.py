"""Training: data pipeline, losses, optimisation (SPEC §5)."""
