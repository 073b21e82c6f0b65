"""Trajectories of a 3-D world for the video prior, and their codes.

A trajectories data set has one row per episode with the columns

- `frames`: the episode's frames, a sequence of images (`List(Image())`);
- `actions`: the action taken after each frame, a sequence of action ids of the same length, best a
  `List(ClassLabel(names=...))` so the action names travel with the data.

`data.worlds.render_trajectories` renders one from ViZDoom; any data set with these two columns (a Hub name, a
`save_to_disk` folder) works in its place.

A trajectory codes data set (`encode_trajectories`, `scripts/extract_trajectory_codes.py`) has the same rows with
`codes`, the (T, h, w) code grids of a trajectory's T frames, in place of the frames, and the `actions` column as it
was. The frames are encoded by the machinery of `data.encoding` (`encode_images`: each process encodes its share of the
batches, all get every code), and `codes_info.json` names the VQ-VAE as for image codes.

For training, `TrajectoryWindows` cuts the trajectories into windows of `context_frames + 1` frames: the context, the
frame to predict and the action that leads to it.
"""

import dataclasses
import logging

import numpy as np
import pyarrow.compute as pc
import torch
from accelerate import Accelerator
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value

from ..models.vqvae.modeling_vqvae import VQVAEModel
from .codes import CODES_COLUMN, codes_features
from .encoding import encode_images
from .images import ImageTransform, decode_image
from .splits import load_named_dataset, training_and_validation_splits


logger = logging.getLogger(__name__)

FRAMES_COLUMN = "frames"

ACTIONS_COLUMN = "actions"

# The column of single frames that the frames of all trajectories are flattened into for encoding.
_FRAME_COLUMN = "image"


# ---------------------------------------------------------------------------------------------
# Checks


def check_trajectory_columns(dataset: Dataset, sequence_column: str, actions_column: str, what: str = "frames") -> None:
    """Raise a `ValueError` unless the data set has a sequence column (`frames` or `codes`) and a column of action
    sequences (a `List` of `ClassLabel` or integers) of the same length in every row."""
    for column in (sequence_column, actions_column):
        if column not in dataset.column_names:
            raise ValueError(
                f"the trajectories have no {column!r} column; their columns are {dataset.column_names} "
                f"(a trajectory needs its {what} and the action taken after each frame)"
            )
    feature = dataset.features[actions_column]
    inner = getattr(feature, "feature", None)
    if not isinstance(feature, List) or not (
        isinstance(inner, ClassLabel) or (isinstance(inner, Value) and "int" in inner.dtype)
    ):
        raise ValueError(
            f"the {actions_column!r} column must hold sequences of action ids (List(ClassLabel) or List of integers), "
            f"got {feature}"
        )
    if len(dataset):
        frames = pc.list_value_length(dataset.data.column(sequence_column))
        actions = pc.list_value_length(dataset.data.column(actions_column))
        mismatched = np.flatnonzero(~np.asarray(pc.equal(frames, actions)))
        if len(mismatched):
            row = int(mismatched[0])
            raise ValueError(
                f"trajectory {row} has {frames[row].as_py()} {what} but {actions[row].as_py()} actions; every "
                f"trajectory needs one action per frame (the action taken after it)"
            )


def action_space(dataset: Dataset, actions_column: str) -> tuple[int, list[str] | None]:
    """The number of actions and their names: a `ClassLabel`'s, else one more than the largest id found."""
    inner = dataset.features[actions_column].feature
    if isinstance(inner, ClassLabel):
        return inner.num_classes, list(inner.names)
    values = pc.list_flatten(dataset.data.column(actions_column))
    return (int(pc.max(values).as_py()) + 1 if len(values) else 1), None


def check_action_ids(dataset: Dataset, actions_column: str, num_actions: int, where: str) -> None:
    """Raise a `ValueError` when an action id lies outside [0, num_actions)."""
    values = pc.list_flatten(dataset.data.column(actions_column))
    if len(values):
        bounds = pc.min_max(values).as_py()
        if bounds["min"] < 0 or bounds["max"] >= num_actions:
            raise ValueError(
                f"the actions of {where} lie in [{bounds['min']}, {bounds['max']}], outside the action space "
                f"[0, {num_actions})"
            )


def check_trajectory_lengths(dataset: Dataset, sequence_column: str, min_frames: int, where: str) -> None:
    """Raise a `ValueError` naming the first trajectory shorter than `min_frames` (context + 1 for training)."""
    if not len(dataset):
        return
    lengths = np.asarray(pc.list_value_length(dataset.data.column(sequence_column)))
    short = np.flatnonzero(lengths < min_frames)
    if len(short):
        raise ValueError(
            f"{len(short)} trajectories of {where} are shorter than {min_frames} frames (context_frames + 1), e.g. "
            f"trajectory {int(short[0])} with {int(lengths[short[0]])}; render longer episodes or lower context_frames"
        )


def check_frame_size(trajectories: Dataset, frames_column: str, sample_size: int) -> None:
    """Raise a `ValueError` unless the first frame is `sample_size` pixels square, the VQ-VAE's input size: frames
    are encoded as they are, never rescaled behind the user's back."""
    first = next((frames[0] for frames in trajectories[:1][frames_column] if frames), None)
    if first is None:
        return
    image = decode_image(first)
    if image.size != (sample_size, sample_size):
        raise ValueError(
            f"the frames are {image.width}x{image.height} pixels but the VQ-VAE encodes {sample_size}x{sample_size} "
            "frames (its sample_size); render the trajectories at that resolution or use a VQ-VAE trained on them"
        )


# ---------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass
class TrajectoryDataArguments:
    """Where the trajectories come from and how they are split."""

    _argument_group_name = "trajectories"

    dataset_name: str | None = dataclasses.field(
        default=None,
        metadata={"help": "The trajectories (frames + actions): a Hub data set or a `save_to_disk` folder "
                          "(scripts/make_world_data.py --kind trajectories writes one)."},
    )
    dataset_config_name: str | None = dataclasses.field(default=None, metadata={"help": "The configuration of --dataset_name."})
    cache_dir: str | None = dataclasses.field(default=None, metadata={"help": "Where `datasets` caches downloads."})
    frames_column: str = dataclasses.field(default=FRAMES_COLUMN, metadata={"help": "The column of frame sequences."})
    actions_column: str = dataclasses.field(
        default=ACTIONS_COLUMN, metadata={"help": "The column of action sequences (the codes keep the name `actions`)."}
    )
    validation_split: str | None = dataclasses.field(
        default=None, metadata={"help": "The split to validate on; by default the first of validation/valid/val/test."}
    )
    validation_fraction: float = dataclasses.field(
        default=0.1, metadata={"help": "Share of the trajectories held out when the data set has no validation split."}
    )
    max_train_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only this many training trajectories."}
    )
    max_validation_samples: int | None = dataclasses.field(
        default=None, metadata={"help": "Keep only this many validation trajectories."}
    )
    dataloader_num_workers: int = dataclasses.field(default=0, metadata={"help": "Worker processes loading data."})

    def __post_init__(self):
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        for name in ("max_train_samples", "max_validation_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.dataloader_num_workers < 0:
            raise ValueError(f"--dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}")


def load_trajectories(data: TrajectoryDataArguments, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The training and validation trajectories of --dataset_name (validation held out by --validation_fraction,
    drawn with `seed`, when the data set has no validation split), cut to --max_train_samples /
    --max_validation_samples."""
    if not data.dataset_name:
        raise ValueError("--dataset_name is required: a trajectories data set (frames + actions), Hub id or folder")
    splits = load_named_dataset(data.dataset_name, data.dataset_config_name, cache_dir=data.cache_dir)
    train, validation = training_and_validation_splits(splits, data, data.dataset_name, seed)
    if data.max_validation_samples is not None:
        validation = validation.select(range(min(data.max_validation_samples, len(validation))))
    return train, validation


# ---------------------------------------------------------------------------------------------
# Encoding


def trajectory_codes_features(num_embeddings: int, actions_feature) -> Features:
    grid = codes_features(num_embeddings)[CODES_COLUMN]
    return Features({CODES_COLUMN: List(grid), ACTIONS_COLUMN: actions_feature})


def flatten_frames(trajectories: Dataset, frames_column: str) -> tuple[Dataset, np.ndarray]:
    """The frames of all trajectories, in order, as an image data set (undecoded) with one `image` column, and the
    number of frames of each trajectory."""
    undecoded = trajectories.select_columns([frames_column]).cast_column(frames_column, List(Image(decode=False)))
    lengths = np.asarray(pc.list_value_length(undecoded.data.column(frames_column)), dtype=np.int64)
    frames = undecoded.map(
        lambda batch: {_FRAME_COLUMN: [frame for frames in batch[frames_column] for frame in frames]},
        batched=True, remove_columns=[frames_column], features=Features({_FRAME_COLUMN: Image(decode=False)}),
        desc="listing frames",
    )
    return frames, lengths


@torch.no_grad()
def encode_trajectories(
    vqvae: VQVAEModel,
    trajectories: Dataset,
    transform: ImageTransform,
    accelerator: Accelerator,
    *,
    batch_size: int,
    frames_column: str = FRAMES_COLUMN,
    actions_column: str = ACTIONS_COLUMN,
    num_workers: int = 0,
    description: str = "encoding frames",
) -> Dataset:
    """The trajectory codes of `trajectories` (`codes`: (T, h, w) per trajectory, `actions` as they were), on every
    process. Frames must be the VQ-VAE's size and all readable: a trajectory with a hole is no trajectory."""
    check_trajectory_columns(trajectories, frames_column, actions_column)
    check_frame_size(trajectories, frames_column, vqvae.config.sample_size)
    frames, lengths = flatten_frames(trajectories, frames_column)
    if len(frames) == 0:
        raise ValueError("the trajectories hold no frame to encode")
    encoded = encode_images(
        vqvae, frames, _FRAME_COLUMN, None, transform, accelerator, batch_size=batch_size, num_workers=num_workers,
        max_unreadable_fraction=0.0, description=description,
    )
    grids = encoded.with_format("numpy")[CODES_COLUMN]
    ends = np.cumsum(lengths)
    codes = [grids[end - length : end] for end, length in zip(ends, lengths)]
    features = trajectory_codes_features(vqvae.config.num_embeddings, trajectories.features[actions_column])
    return Dataset.from_dict({CODES_COLUMN: codes, ACTIONS_COLUMN: trajectories[actions_column]}, features=features)


def encode_trajectory_splits(
    vqvae: VQVAEModel, processor, train: Dataset, validation: Dataset, data: TrajectoryDataArguments,
    accelerator: Accelerator, *, batch_size: int,
) -> DatasetDict:
    """The trajectory codes of both splits (see `encode_trajectories`)."""
    transform = ImageTransform(processor, center_crop=True)
    return DatasetDict({
        name: encode_trajectories(
            vqvae, split, transform, accelerator, batch_size=batch_size, frames_column=data.frames_column,
            actions_column=data.actions_column, num_workers=data.dataloader_num_workers,
            description=f"encoding {name} frames",
        )
        for name, split in (("train", train), ("validation", validation))
    })


# ---------------------------------------------------------------------------------------------
# The windows a video prior trains on


class TrajectoryWindows(torch.utils.data.Dataset):
    """Every window of `context_frames + 1` successive frames of trajectory codes: `input_ids`, the window's
    (context_frames + 1, h, w) codes, and `actions`, a (1,) tensor holding the action taken after the last context
    frame (the one that leads to the frame to predict)."""

    def __init__(self, codes: Dataset, context_frames: int, actions_column: str = ACTIONS_COLUMN):
        rows = codes.with_format("numpy", columns=[CODES_COLUMN, actions_column])
        self.codes = [np.asarray(grids, dtype=np.int64) for grids in rows[CODES_COLUMN]]
        self.actions = [np.asarray(actions, dtype=np.int64) for actions in rows[actions_column]]
        self.context_frames = context_frames
        self.windows = [
            (trajectory, start)
            for trajectory, grids in enumerate(self.codes)
            for start in range(len(grids) - context_frames)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        trajectory, start = self.windows[int(index)]
        end = start + self.context_frames
        return {
            "input_ids": torch.from_numpy(self.codes[trajectory][start : end + 1]),
            "actions": torch.from_numpy(self.actions[trajectory][end - 1 : end]),
        }
