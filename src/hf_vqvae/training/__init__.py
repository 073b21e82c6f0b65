"""Training with Accelerate: the shared loop (`loop`) and checkpoints (`checkpoints`), and one recipe
per model (`vqvae`, `prior`)."""
