"""Encode a speech data set with a trained audio VQ-VAE into one-row grids of codes (one per fixed-length segment,
the speaker as the class label), the training data of a prior over speech codes.

    accelerate launch scripts/extract_speech_codes.py --vqvae outputs/speech --dataset_name outputs/flite-speech \\
        --speaker_column speaker --segment_length 16384 --output_dir outputs/speech-codes
    accelerate launch scripts/train_prior.py --codes_dataset outputs/speech-codes --output_dir outputs/speech-prior

`python scripts/extract_speech_codes.py --help` lists every flag with its default; docs/audio.md explains them.
"""

from hf_vqvae.commands.extract_speech_codes import extract_speech_codes, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(extract_speech_codes, parse_args)
