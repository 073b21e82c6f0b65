"""The command lines besides training, each behind a thin script of `scripts/`: extracting codes with a trained model
(`extract_codes`, `extract_speech_codes`, `extract_trajectory_codes`, sharing `extraction`) and making the default
data sets (`make_speech_data`, `make_world_data`). The training scripts' recipes are in `training.recipes`."""
