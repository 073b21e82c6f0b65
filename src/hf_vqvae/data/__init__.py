"""Data sets for training: images (`images`) and code grids encoded by a trained VQ-VAE (`codes`)."""
