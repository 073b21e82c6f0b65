"""Jinja templates of the model cards that hf-vqvae writes (rendered by huggingface_hub.ModelCard)."""
