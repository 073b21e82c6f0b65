"""Encoding the frames of a trajectories data set (frames + actions) with a trained image VQ-VAE
(`extract_trajectory_codes`, behind scripts/extract_trajectory_codes.py): the training data of the video prior."""

import dataclasses

from datasets import DatasetDict
from transformers import HfArgumentParser

from ..data.trajectories import TrajectoryDataArguments, encode_trajectory_splits, load_trajectories
from ..models.auto import load_vqvae
from ..training.accelerator import create_accelerator, end_training
from .extraction import publish_codes


@dataclasses.dataclass
class TrajectoryCodesArguments:
    """The encoder and the output of scripts/extract_trajectory_codes.py."""

    _argument_group_name = "codes"

    vqvae: str | None = dataclasses.field(
        default=None, metadata={"help": "The trained image VQ-VAE: a folder (as scripts/train.py writes) or a Hub id."}
    )
    output_dir: str = dataclasses.field(
        default="outputs/trajectory-codes", metadata={"help": "Where `save_to_disk` writes the trajectory codes."}
    )
    batch_size: int = dataclasses.field(default=64, metadata={"help": "Frames encoded at once, per process."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the validation trajectories held out."})
    push_to_hub: bool = dataclasses.field(default=False, metadata={"help": "Also upload the codes data set to the Hub."})
    hub_dataset_id: str | None = dataclasses.field(
        default=None, metadata={"help": "org/name; by default the name of --output_dir."}
    )
    hub_token: str | None = dataclasses.field(
        default=None, metadata={"help": "A Hub token; by default the one `hf auth login` stored."}
    )
    hub_private_repo: bool = dataclasses.field(default=False, metadata={"help": "Make a new Hub repository private."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")


def parse_args(argv: list[str] | None = None) -> tuple[TrajectoryDataArguments, TrajectoryCodesArguments]:
    """The settings of `scripts/extract_trajectory_codes.py`: the trajectories' flags and the codes'."""
    return tuple(HfArgumentParser([TrajectoryDataArguments, TrajectoryCodesArguments]).parse_args_into_dataclasses(args=argv))


def extract_trajectory_codes(data: TrajectoryDataArguments, extraction: TrajectoryCodesArguments) -> DatasetDict:
    """Encode the frames of the trajectories with the VQ-VAE, save the trajectory codes (`train` and `validation`)
    with `codes_info.json` to --output_dir (main process) and push them when asked; returns them on every process."""
    if not extraction.vqvae:
        raise ValueError("--vqvae is required: the trained image VQ-VAE (a folder or a Hub id) that encodes the frames")
    accelerator = create_accelerator()
    vqvae, processor = load_vqvae(extraction.vqvae, cache_dir=data.cache_dir)
    with accelerator.main_process_first():
        train, validation = load_trajectories(data, extraction.seed)
    codes = encode_trajectory_splits(vqvae, processor, train, validation, data, accelerator, batch_size=extraction.batch_size)
    publish_codes(codes, vqvae.config, extraction.vqvae, data.dataset_name, extraction, accelerator)
    end_training(accelerator)
    return codes
