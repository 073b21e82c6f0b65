"""Rendering a data set of first-person 3-D frames or trajectories with ViZDoom and saving it (`make_world_data`, behind
scripts/make_world_data.py), split by whole episodes and pushed to the Hub when asked."""

import dataclasses
import logging
import os

import numpy as np
from datasets import DatasetDict
from transformers import HfArgumentParser

from ..data.worlds import DEFAULT_SCENARIO, import_vizdoom, render_frames, render_trajectories


logger = logging.getLogger(__name__)


@dataclasses.dataclass
class WorldDataArguments:
    """The flags of scripts/make_world_data.py."""

    kind: str = dataclasses.field(
        default="frames", metadata={"help": "`frames` (an `image` column) or `trajectories` (`frames` + `actions`)."}
    )
    output_dir: str = dataclasses.field(default="outputs/world-frames", metadata={"help": "Where `save_to_disk` writes."})
    num_frames: int = dataclasses.field(default=10000, metadata={"help": "Frames to render (--kind frames)."})
    num_episodes: int = dataclasses.field(default=500, metadata={"help": "Episodes to render (--kind trajectories)."})
    steps_per_episode: int = dataclasses.field(
        default=None, metadata={"help": "Steps per episode; by default 100 for frames and 16 for trajectories."}
    )
    frame_stride: int = dataclasses.field(default=2, metadata={"help": "Keep every n-th step's frame (--kind frames)."})
    resolution: int = dataclasses.field(default=None, metadata={"help": "Frame side; by default 84 for frames, 64 for trajectories."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the game and the policy: same seed, same bytes."})
    scenario: str = dataclasses.field(
        default=DEFAULT_SCENARIO, metadata={"help": "A vizdoom scenario name (see `available_scenarios()`) or a .cfg path."}
    )
    validation_fraction: float = dataclasses.field(
        default=0.1, metadata={"help": "Share of the episodes written as the `validation` split (whole episodes, so no frame leaks)."}
    )
    push_to_hub: bool = dataclasses.field(default=False, metadata={"help": "Also upload the data set to the Hub."})
    hub_dataset_id: str = dataclasses.field(default=None, metadata={"help": "org/name; by default the name of --output_dir."})
    hub_token: str = dataclasses.field(default=None, metadata={"help": "A Hub token; by default the one `hf auth login` stored."})
    hub_private_repo: bool = dataclasses.field(default=False, metadata={"help": "Make a new Hub repository private."})

    def __post_init__(self):
        if self.kind not in ("frames", "trajectories"):
            raise ValueError(f"--kind must be 'frames' or 'trajectories', got {self.kind!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must lie in [0, 1), got {self.validation_fraction}")
        if self.steps_per_episode is None:
            self.steps_per_episode = 100 if self.kind == "frames" else 16
        if self.resolution is None:
            self.resolution = 84 if self.kind == "frames" else 64


def parse_args(argv: list[str] | None = None) -> WorldDataArguments:
    """The settings of `scripts/make_world_data.py`."""
    (arguments,) = HfArgumentParser(WorldDataArguments).parse_args_into_dataclasses(args=argv)
    return arguments


def make_world_data(arguments: WorldDataArguments):
    """Render the data set `arguments` describe, split whole episodes into `train` and `validation`,
    save it to `output_dir` and push it when asked; returns the `DatasetDict`."""
    import_vizdoom()
    if arguments.kind == "frames":
        data = render_frames(
            arguments.num_frames, arguments.resolution, arguments.seed, arguments.scenario,
            steps_per_episode=arguments.steps_per_episode, frame_stride=arguments.frame_stride,
        )
        episodes = np.asarray(data["episode"])
    else:
        data = render_trajectories(
            arguments.num_episodes, arguments.steps_per_episode, arguments.resolution, arguments.seed, arguments.scenario
        )
        episodes = np.arange(len(data))
    num_episodes = int(episodes.max()) + 1
    num_validation = int(round(arguments.validation_fraction * num_episodes))
    if arguments.validation_fraction > 0 and num_validation == 0 and num_episodes > 1:
        num_validation = 1
    first_validation = num_episodes - num_validation
    splits = DatasetDict(train=data.select(np.flatnonzero(episodes < first_validation)))
    if num_validation:
        splits["validation"] = data.select(np.flatnonzero(episodes >= first_validation))
    splits = splits.flatten_indices()
    splits.save_to_disk(arguments.output_dir)
    rows = ", ".join(f"{name} {len(split)} rows" for name, split in splits.items())
    print(f"wrote the {arguments.scenario} {arguments.kind} to {arguments.output_dir}: {rows}", flush=True)
    if arguments.push_to_hub:
        repo_id = arguments.hub_dataset_id or os.path.basename(os.path.abspath(arguments.output_dir))
        splits.push_to_hub(
            repo_id, token=arguments.hub_token, private=arguments.hub_private_repo or None,
            commit_message=f"ViZDoom {arguments.scenario} {arguments.kind} (seed {arguments.seed})",
        )
        logger.info("pushed the data set to %s", repo_id)
    return splits
