"""One folder per model, as in transformers: `configuration_<name>.py`, `modeling_<name>.py` and its
processor."""
