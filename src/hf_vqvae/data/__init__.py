"""Data: loading, decoding and the examples models train on; nothing here trains or parses a command line.

- `examples` (seeded and streamed examples, unreadable files, the epoch's shuffle, batches) and `splits` (a data set
  by name, its training and validation splits): what every kind of data shares;
- `images` and `speech` (with `audio_files`: decoding audio; `speech_augmentation`: noise and rooms for training
  clips): the data sets of the two kinds of VQ-VAE;
- the default data sets, one module each: `skimage_photos`, `flite_speech`, `worlds` (ViZDoom frames and
  trajectories);
- `codes` (the schema of a codes data set and its storage) and `encoding` (writing one with a trained model);
  `trajectories` (trajectories, their codes and the windows a video prior trains on).
"""
