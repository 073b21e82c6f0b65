"""What the commands that extract codes share: their settings (which VQ-VAE, where the codes go, the Hub) and their
end (`publish_codes`: the codes and their `codes_info.json` saved, and pushed when asked)."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict

from ..argument_checks import check_at_least
from ..data.codes import CodesInfo, push_codes, save_codes


logger = logging.getLogger(__name__)


@dataclass
class CodesArguments:
    """Which VQ-VAE encodes the images, and where the codes data set goes."""

    _argument_group_name = "codes"

    vqvae: str | None = field(
        default=None,
        metadata={"required": True, "help": "The trained VQ-VAE: a folder (as scripts/train.py writes) or a Hub id."},
    )
    output_dir: str = field(default="outputs/codes", metadata={"help": "Where `save_to_disk` writes the codes data set."})
    batch_size: int = field(default=64, metadata={"help": "Images encoded at once, per process."})
    seed: int = field(default=0, metadata={"help": "Seed of the validation split held out when the data has none."})
    push_to_hub: bool = field(default=False, metadata={"help": "Also upload the codes data set to the Hub."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "org/name of the data set; by default the name of --output_dir."}
    )
    hub_token: str | None = field(default=None, metadata={"help": "A Hub token; by default the one `hf auth login` stored."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the data set repository private."})

    def __post_init__(self):
        check_at_least(self, "batch_size", 1)


def publish_codes(
    codes: DatasetDict, config, vqvae: str, dataset_name: str, options, accelerator, sequence_length: int | None = None
) -> None:
    """Save `codes` with their `codes_info.json` to `options.output_dir` (main process) and push them when
    `options.push_to_hub` (to `options.hub_dataset_id`, else the folder's name): the end of every extraction.
    `sequence_length` is the codes per segment of an audio VQ-VAE's codes."""
    # A local VQ-VAE is named by its absolute path, so that the codes find it from any folder.
    vqvae_name = str(Path(vqvae).resolve()) if Path(vqvae).is_dir() else vqvae
    info = CodesInfo.of_vqvae(config, vqvae_name, dataset_name, sequence_length)
    if not accelerator.is_main_process:
        return
    save_codes(codes, info, options.output_dir)
    logger.info("wrote %s to %s", {name: len(split) for name, split in codes.items()}, options.output_dir)
    if options.push_to_hub:
        repo_id = options.hub_dataset_id or Path(options.output_dir).resolve().name
        push_codes(codes, info, repo_id, token=options.hub_token, private=options.hub_private_repo or None)
        logger.info("pushed the codes to the data set %s", repo_id)
