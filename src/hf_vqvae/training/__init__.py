"""Training with Accelerate. Shared by every recipe: the typed settings (`arguments`), the loop (`loop`),
checkpoints (`checkpoints`) and what keeps a run's work safe (`guards`). One recipe per model: `vqvae`,
`prior`, `hierarchical_vqvae` (stage 2 of the hierarchy), `video_prior`, `audio_vqvae`."""
