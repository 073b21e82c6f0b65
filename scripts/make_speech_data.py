"""Synthesise the default multi-speaker speech data set with flite and save it as a `save_to_disk` folder
(and optionally push it to the Hub). Needs flite: `apt-get install -y flite`.

    python scripts/make_speech_data.py --output_dir outputs/flite-speech
    python scripts/make_speech_data.py --minutes_per_speaker 10 --push_to_hub --hub_dataset_id org/flite-speech

Train on it with `accelerate launch scripts/train_audio.py --dataset_name outputs/flite-speech`.
"""

from hf_vqvae.commands.make_speech_data import make_speech_data, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(make_speech_data, parse_args)
