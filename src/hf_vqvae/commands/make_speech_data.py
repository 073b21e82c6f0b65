"""Synthesising the default multi-speaker speech data set with flite and saving it (`make_speech_data`, behind
scripts/make_speech_data.py), pushed to the Hub when asked."""

import argparse

from datasets import DatasetDict

from ..argument_checks import HelpWithDefaults
from ..data.flite_speech import DEFAULT_SPEECH_DATASET_NAME, FLITE_VOICES, make_default_speech_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Synthesise the default multi-speaker speech data set with flite.", formatter_class=HelpWithDefaults
    )
    parser.add_argument("--output_dir", default="outputs/flite-speech", help="Where the `save_to_disk` folder goes.")
    parser.add_argument("--minutes_per_speaker", type=float, default=3.0, help="Speech per voice, in minutes.")
    parser.add_argument(
        "--voices", nargs="+", default=list(FLITE_VOICES), choices=FLITE_VOICES, help="The flite voices (speakers)."
    )
    parser.add_argument("--validation_fraction", type=float, default=0.1, help="Share of utterances held out.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the sentences and of the split.")
    parser.add_argument("--num_workers", type=int, default=2, help="flite processes run at once.")
    parser.add_argument("--push_to_hub", action="store_true", help="Also upload the data set to the Hub.")
    parser.add_argument("--hub_dataset_id", default=None, help="The Hub data set repository (org/name).")
    parser.add_argument("--hub_token", default=None, help="A Hub token; by default the logged-in one.")
    args = parser.parse_args(argv)
    if args.minutes_per_speaker <= 0:
        parser.error(f"--minutes_per_speaker must be > 0, got {args.minutes_per_speaker}")
    if args.push_to_hub and not args.hub_dataset_id:
        parser.error("--push_to_hub needs --hub_dataset_id")
    return args


def make_speech_data(args: argparse.Namespace) -> DatasetDict:
    """The data set `parse_args` describes, saved to --output_dir (and pushed when asked)."""
    speech = make_default_speech_dataset(
        args.minutes_per_speaker, tuple(args.voices), args.validation_fraction, args.seed, args.num_workers
    )
    speech.save_to_disk(args.output_dir)
    rows = ", ".join(f"{split} {len(data)} rows ({sum(data['duration']) / 60:.1f} min)" for split, data in speech.items())
    print(f"wrote {DEFAULT_SPEECH_DATASET_NAME} to {args.output_dir}: {rows}", flush=True)
    if args.push_to_hub:
        speech.push_to_hub(args.hub_dataset_id, token=args.hub_token)
    return speech
