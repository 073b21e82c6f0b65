"""Training with Accelerate: one small shared loop and its pieces, and one recipe per model above them.

Shared by every recipe: the typed settings (`arguments`), the accelerator setup (`accelerator`), the loop (`loop`)
and its interface (`recipe`), checkpoints (`checkpoints`), what keeps a run's work safe (`guards`), trackers
(`tracking`) and the final files (`publishing`). Shared by two recipes: the VQ-VAEs' config flags and logs
(`autoencoders`), the code grids a model over codes trains on (`training_codes`), spectrogram figures
(`spectrograms`). The recipes, side by side, are in `training.recipes`.
"""
