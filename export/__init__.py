"""Host-side training, conversion and FLOP counting (needs the `train` extra: torch...)."""
