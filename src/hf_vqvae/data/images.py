"""Image data sets for training: Hub / local / streamed loading (`load_image_datasets`, the scikit-image default of
`skimage_photos` without flags), decoding with unreadable images skipped and counted, and preprocessing into augmented
`pixel_values` examples and their loaders. The seeded examples, the counting and the shuffle are `examples`'."""

import io
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from datasets import Dataset, Image, IterableDataset, load_dataset
from datasets.distributed import split_dataset_by_node

from ..argument_checks import check_at_least, check_in_range
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from .examples import (
    EpochShuffleSampler,
    SeededExamples,
    StreamingExamples,
    UnreadableCounter,
    collate_examples,
    drop_unreadable,
)
from .skimage_photos import DEFAULT_DATASET_NAME, load_default_dataset
from .splits import VALIDATION_SPLIT_NAMES, dataset_display_name, load_named_dataset, training_and_validation_splits


logger = logging.getLogger(__name__)


class UnreadableImageError(ValueError):
    """An image that cannot be decoded (corrupt, truncated, not an image)."""


@dataclass
class ImageDataArguments:
    """Which image data set a run reads and how (diffusers' flag names where diffusers has one)."""

    _argument_group_name = "data"

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A data set on the Hub, or a local folder written by `Dataset.save_to_disk`. Without it (and "
            f"without --train_data_dir) the {DEFAULT_DATASET_NAME} bundled with scikit-image are used."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The configuration of --dataset_name."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where `datasets` caches downloads and processed files."})
    train_data_dir: str | None = field(default=None, metadata={"help": "A local folder of images (subfolders become labels)."})
    image_column: str = field(default="image", metadata={"help": "The column holding the images."})
    label_column: str | None = field(default=None, metadata={"help": "An optional column of class labels."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the data set instead of downloading or loading it whole; shards are split across "
            "processes. Needs --max_train_steps."
        },
    )
    validation_split: str | None = field(
        default=None,
        metadata={
            "help": f"The split to validate on; by default the first of {VALIDATION_SPLIT_NAMES} that exists, "
            "otherwise --validation_fraction of the training split is held out."
        },
    )
    validation_fraction: float = field(
        default=0.05, metadata={"help": "Share of the training split held out when the data set has no validation split."}
    )
    max_validation_samples: int = field(default=256, metadata={"help": "Validation examples used for the metrics."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training split (for debugging or quick runs)."}
    )
    resolution: int | None = field(default=32, metadata={"help": "Side of the square training images."})
    center_crop: bool = field(
        default=False, metadata={"help": "Crop the center of each (resized) image; by default a random crop is taken."}
    )
    random_flip: bool = field(default=False, metadata={"help": "Flip training images horizontally at random."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes loading data."})
    max_unreadable_fraction: float = field(
        default=0.01,
        metadata={"help": "Unreadable images are skipped with a warning; the run stops if more than this share fails."},
    )

    def __post_init__(self):
        check_in_range(self, "validation_fraction", 0, 1, low_open=True, high_open=True)
        check_at_least(self, "max_validation_samples", 1)
        check_at_least(self, "max_train_samples", 1, optional=True)
        check_at_least(self, "resolution", 1, optional=True)
        check_at_least(self, "dataloader_num_workers", 0)
        check_in_range(self, "max_unreadable_fraction", 0, 1)
        if self.dataset_name and self.train_data_dir:
            raise ValueError("pass either --dataset_name or --train_data_dir, not both")


@dataclass
class ImageDatasets:
    """The training and validation splits, with image bytes left undecoded (decoded on use, so an
    unreadable image becomes a warning instead of a crash)."""

    train: Dataset | IterableDataset
    validation: Dataset | IterableDataset
    image_column: str
    label_column: str | None
    name: str


def load_image_datasets(args: ImageDataArguments, seed: int = 0) -> ImageDatasets:
    """The data set `args` describe, with a validation split (held out with `seed` when it has none)."""
    if args.dataset_name:
        splits = load_named_dataset(
            args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir, streaming=args.streaming
        )
        name = dataset_display_name(args.dataset_name)
    elif args.train_data_dir:
        if not os.path.isdir(args.train_data_dir):
            raise ValueError(f"--train_data_dir {args.train_data_dir!r} is not a folder")
        splits = load_dataset("imagefolder", data_dir=args.train_data_dir, cache_dir=args.cache_dir, streaming=args.streaming)
        name = dataset_display_name(args.train_data_dir)
    else:
        if args.streaming:
            raise ValueError("--streaming needs --dataset_name or --train_data_dir; the default data set is in memory")
        splits = load_default_dataset(
            crop_size=args.resolution, validation_fraction=args.validation_fraction, seed=seed
        )
        name = DEFAULT_DATASET_NAME

    train, validation = training_and_validation_splits(splits, args, name, seed)
    check_columns(train, args.image_column, args.label_column)
    check_columns(validation, args.image_column, None)
    return ImageDatasets(
        _undecoded(train, args.image_column), _undecoded(validation, args.image_column), args.image_column,
        args.label_column, name,
    )


def check_columns(dataset: Dataset | IterableDataset, image_column: str, label_column: str | None) -> None:
    """Raise a `ValueError` listing the columns when a requested one is missing."""
    columns = dataset.column_names
    if columns is None:  # a stream whose features are unknown until it is read
        columns = list(next(iter(dataset), {}))
    for flag, column in (("--image_column", image_column), ("--label_column", label_column)):
        if column is not None and column not in columns:
            raise ValueError(f"{flag} {column!r} is not a column of the data set; its columns are {columns}")


def _undecoded(dataset: Dataset | IterableDataset, image_column: str) -> Dataset | IterableDataset:
    """Keep an `Image` column's bytes/path so that decoding happens in `decode_image`."""
    feature = (dataset.features or {}).get(image_column)
    if isinstance(feature, Image) and feature.decode:
        return dataset.cast_column(image_column, Image(decode=False))
    return dataset


def decode_image(value) -> PIL.Image.Image:
    """A fully decoded PIL image from what a data set stores: `datasets.Image(decode=False)`'s
    `{"bytes", "path"}`, raw bytes, a file path, an array or a PIL image."""
    try:
        if isinstance(value, PIL.Image.Image):
            image = value
        elif isinstance(value, dict):
            image = Image().decode_example(value)
        elif isinstance(value, bytes):
            image = PIL.Image.open(io.BytesIO(value))
        elif isinstance(value, (str, os.PathLike)):
            image = PIL.Image.open(value)
        else:
            image = PIL.Image.fromarray(np.asarray(value))
        # Opening only reads the header; a truncated or corrupt file fails while decoding.
        image.load()
        return image
    except (OSError, ValueError, TypeError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot decode image {_describe(value)}: {error}") from error


def _describe(value) -> str:
    if isinstance(value, dict) and value.get("path"):
        return repr(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return repr(str(value))
    return f"of type {type(value).__name__}"


def image_counter(max_fraction: float) -> UnreadableCounter:
    """The count of the images that do not decode."""
    return UnreadableCounter(max_fraction, kind="image", column_flag="--image_column")


def drop_unreadable_images(dataset: Dataset, image_column: str, max_fraction: float) -> Dataset:
    """The images of `dataset` that decode (`drop_unreadable`)."""
    return drop_unreadable(dataset, image_column, decode_image, UnreadableImageError, image_counter(max_fraction))


class ImageTransform:
    """An image -> `pixel_values` (C, resolution, resolution) in [-1, 1].

    The image processor converts the mode (grayscale and RGBA to RGB, or to grayscale for a
    one-channel model), resizes the shorter side to the resolution and normalises; this class
    then crops (center, or random with `rng`) and flips (with `rng`).
    """

    def __init__(self, processor: VQVAEImageProcessor, center_crop: bool = True, random_flip: bool = False):
        self.processor = processor
        self.resolution = processor.crop_size["height"]
        self.center_crop = center_crop
        self.random_flip = random_flip

    def __call__(self, image: PIL.Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        pixel_values = self.processor(image, do_center_crop=False, return_tensors="pt")["pixel_values"][0]
        height, width = pixel_values.shape[-2:]
        if self.center_crop or rng is None:
            top, left = (height - self.resolution) // 2, (width - self.resolution) // 2
        else:
            top, left = rng.integers(height - self.resolution + 1), rng.integers(width - self.resolution + 1)
        pixel_values = pixel_values[:, top : top + self.resolution, left : left + self.resolution]
        if self.random_flip and rng is not None and rng.random() < 0.5:
            pixel_values = pixel_values.flip(-1)
        return pixel_values.contiguous()


class TrainingImages(SeededExamples):
    """Augmented training examples (`pixel_values`, optional `labels`) of an image data set."""

    def __init__(
        self, dataset: Dataset | IterableDataset, image_column: str, transform: ImageTransform, seed: int,
        label_column: str | None = None,
    ):
        super().__init__(dataset, seed)
        self.image_column = image_column
        self.label_column = label_column
        self.transform = transform

    unreadable_error = UnreadableImageError

    def unreadable_counter(self, max_fraction: float) -> UnreadableCounter:
        return image_counter(max_fraction)

    def decode(self, row: dict) -> PIL.Image.Image:
        return decode_image(row[self.image_column])

    def example(self, image: PIL.Image.Image, row: dict, rng: np.random.Generator) -> dict:
        example = {"pixel_values": self.transform(image, rng)}
        if self.label_column is not None:
            example["labels"] = row[self.label_column]
        return example


class StreamingTrainingImages(StreamingExamples):
    """`TrainingImages` of a streamed data set."""

    def __init__(
        self,
        dataset: IterableDataset,
        image_column: str,
        transform: ImageTransform,
        seed: int,
        label_column: str | None = None,
        max_unreadable_fraction: float = 0.01,
    ):
        super().__init__(TrainingImages(dataset, image_column, transform, seed, label_column), max_unreadable_fraction)


def training_dataloader(
    datasets: ImageDatasets,
    transform: ImageTransform,
    *,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    max_unreadable_fraction: float = 0.01,
    process_index: int = 0,
    num_processes: int = 1,
) -> torch.utils.data.DataLoader:
    """The training loader. A map-style data set is checked for unreadable images up front and
    shuffled by `EpochShuffleSampler` (Accelerate's `prepare` then shards its batches); a
    streamed one is split by shards across the processes here and checked as it streams."""
    if isinstance(datasets.train, IterableDataset):
        stream = split_dataset_by_node(datasets.train.shuffle(seed=seed), rank=process_index, world_size=num_processes)
        examples = StreamingTrainingImages(
            stream, datasets.image_column, transform, seed, datasets.label_column, max_unreadable_fraction
        )
        sampler = None
    else:
        readable = drop_unreadable_images(datasets.train, datasets.image_column, max_unreadable_fraction)
        if len(readable) == 0:
            raise ValueError(f"the training split of {datasets.name!r} holds no readable image")
        examples = TrainingImages(readable, datasets.image_column, transform, seed, datasets.label_column)
        sampler = EpochShuffleSampler(len(examples), seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_examples,
        num_workers=num_workers,
        # Worker seeds come from this generator, so creating a loader never draws from the global
        # random state that a checkpoint restores.
        generator=torch.Generator().manual_seed(seed),
    )


def validation_pixel_values(
    dataset: Dataset | IterableDataset,
    image_column: str,
    transform: ImageTransform,
    max_samples: int,
    max_unreadable_fraction: float = 0.01,
) -> torch.Tensor:
    """The first `max_samples` readable validation images, center-cropped, as one tensor."""
    counter = image_counter(max_unreadable_fraction)
    images = []
    for row in dataset:
        try:
            image = decode_image(row[image_column])
        except UnreadableImageError as error:
            counter.record(error)
            continue
        counter.record(None)
        images.append(transform(image))
        if len(images) == max_samples:
            break
    counter.check()
    if not images:
        raise ValueError("the validation split holds no readable image")
    return torch.stack(images)
