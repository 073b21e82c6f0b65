"""One training recipe per model, side by side (`training.recipe.Recipe`, run by `training.loop.train`): `vqvae`
(scripts/train.py), `audio_vqvae` (scripts/train_audio.py), `prior` (scripts/train_prior.py), `hierarchical_vqvae`
(the hierarchy's second stage, scripts/train_hierarchy.py), `video_prior` (scripts/train_video_prior.py). A recipe
imports the shared modules of `training` (and the library below), never another recipe."""
