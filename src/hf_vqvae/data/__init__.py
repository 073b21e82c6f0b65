"""Data sets for training: images (`images`), code grids encoded by a trained VQ-VAE (`codes`), first-person
3-D frames and trajectories rendered offline (`worlds`) and their codes (`trajectories`), and speech
(`speech`)."""
