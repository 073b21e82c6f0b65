"""Train an audio VQ-VAE (WaveNet decoder, speaker conditioning) with Accelerate; with no data flags, on the
multi-speaker set synthesised by flite (`apt-get install -y flite`).

    accelerate launch scripts/train_audio.py                                   # the synthesised default set
    accelerate launch scripts/train_audio.py --dataset_name outputs/flite-speech --max_train_steps 2000
    accelerate launch scripts/train_audio.py --dataset_name org/vctk --speaker_column speaker_id --preset vctk

`python scripts/train_audio.py --help` lists every flag; docs/audio.md explains them.
"""

from hf_vqvae.training.recipes.audio_vqvae import parse_args, train_audio_vqvae
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(train_audio_vqvae, parse_args)
