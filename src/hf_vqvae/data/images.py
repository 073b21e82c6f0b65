"""Image data sets for training: the embedded default, Hub / local / streaming loading, bad-image
handling and preprocessing into `pixel_values`.

Every random choice of the training data (the shuffle of an epoch, the crop and flip of an example)
is drawn from a generator seeded by (seed, epoch, position), never from a global or per-worker
random state. That makes the batches independent of `--dataloader_num_workers` and lets a resumed
run skip the batches it has already seen and go on with exactly the ones it would have met.
"""

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    Image,
    IterableDataset,
    IterableDatasetDict,
    load_dataset,
    load_from_disk,
)
from datasets.distributed import split_dataset_by_node

from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..argument_checks import check_at_least, check_in_range


logger = logging.getLogger(__name__)

DEFAULT_DATASET_NAME = "scikit-image photographs"

# The natural photographs bundled with scikit-image (file in skimage.data.data_dir, downscale
# factor). The retina is halved so that its crops show vessels rather than flat background.
DEFAULT_PHOTOS = {
    "astronaut": ("astronaut.png", 1),
    "camera": ("camera.png", 1),
    "chelsea": ("chelsea.png", 1),
    "coffee": ("coffee.png", 1),
    "rocket": ("rocket.jpg", 1),
    "immunohistochemistry": ("ihc.png", 1),
    "retina": ("retina.jpg", 2),
    "hubble_deep_field": ("hubble_deep_field.jpg", 1),
    "motorcycle": ("motorcycle_left.png", 1),
    "color": ("color.png", 1),
    "brick": ("brick.png", 1),
    "grass": ("grass.png", 1),
    "gravel": ("gravel.png", 1),
    "coins": ("coins.png", 1),
    "moon": ("moon.png", 1),
}

# Crops whose pixel standard deviation (0-255 scale) is below this are near-uniform (the black sky
# of the Hubble field, the retina's mask) and would teach the model nothing.
MIN_CROP_STD = 4.0

# Shards of a local data set streamed with --streaming: enough to split among processes and workers.
STREAM_SHARDS = 8

VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "test")


class UnreadableImageError(ValueError):
    """An image that cannot be decoded (corrupt, truncated, not an image)."""


class TooManyUnreadableImagesError(RuntimeError):
    """More than the allowed share of a data set's images cannot be decoded."""


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


# ---------------------------------------------------------------------------------------------
# The embedded default data set


def load_default_dataset(crop_size: int = 32, validation_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """Non-overlapping `crop_size` crops of scikit-image's bundled photographs, no network needed.

    Returns a `DatasetDict` with `train` and `validation` splits, each with an `image` column
    (`datasets.Image`) and a `label` column (`ClassLabel`, the photograph a crop comes from), so a
    class-conditional prior can be trained on the same data. The split is stratified by photograph.
    """
    from skimage.data import data_dir

    images, labels = [], []
    for label, (file_name, downscale) in enumerate(DEFAULT_PHOTOS.values()):
        photo = PIL.Image.open(os.path.join(data_dir, file_name))
        photo.load()
        if downscale > 1:
            photo = photo.resize((photo.width // downscale, photo.height // downscale), PIL.Image.BICUBIC)
        for top in range(0, photo.height - crop_size + 1, crop_size):
            for left in range(0, photo.width - crop_size + 1, crop_size):
                crop = photo.crop((left, top, left + crop_size, top + crop_size))
                if np.asarray(crop, dtype=np.float32).std() >= MIN_CROP_STD:
                    images.append(crop)
                    labels.append(label)
    features = Features({"image": Image(), "label": ClassLabel(names=list(DEFAULT_PHOTOS))})
    crops = Dataset.from_dict({"image": images, "label": labels}, features=features)
    split = crops.train_test_split(test_size=validation_fraction, seed=seed, stratify_by_column="label")
    return DatasetDict(train=split["train"], validation=split["test"])


# ---------------------------------------------------------------------------------------------
# Loading


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


def dataset_display_name(name_or_path: str) -> str:
    """How a model card and the logs name a data set: a Hub id as it is; a local folder by its name,
    marked local (so it is never mistaken for a Hub id, nor shows the machine's paths)."""
    local = Path(name_or_path)
    return f"{local.resolve().name} (local folder)" if local.exists() else name_or_path


def load_named_dataset(name: str, config_name: str | None = None, *, cache_dir: str | None = None, streaming: bool = False):
    """The splits of a local folder written by `save_to_disk` (a lone `Dataset` becomes the `train`
    split), else of a Hub data set."""
    local = Path(name)
    if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
        loaded = load_from_disk(str(local))
        splits = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
        if streaming:
            return IterableDatasetDict({split: data.to_iterable_dataset(num_shards=STREAM_SHARDS) for split, data in splits.items()})
        return splits
    return load_dataset(name, config_name, cache_dir=cache_dir, streaming=streaming)


def training_and_validation_splits(splits, args: ImageDataArguments, name: str, seed: int = 0) -> tuple:
    """The training and validation splits that `args` ask for, from the
    splits of any data set (images or codes): --validation_split, else the first of
    `VALIDATION_SPLIT_NAMES` there is, else --validation_fraction of `train` held out (the first
    --max_validation_samples examples of a stream); `train` cut to --max_train_samples."""
    if "train" not in splits:
        raise ValueError(f"the data set {name!r} has no 'train' split; its splits are {sorted(splits)}")
    train = splits["train"]
    if args.validation_split and args.validation_split not in splits:
        raise ValueError(f"--validation_split {args.validation_split!r} not found; the splits are {sorted(splits)}")
    validation_split = args.validation_split or next((s for s in VALIDATION_SPLIT_NAMES if s in splits), None)

    if validation_split is not None:
        validation = splits[validation_split]
    elif isinstance(train, IterableDataset):
        validation = train.take(args.max_validation_samples)
        train = train.skip(args.max_validation_samples)
    else:
        held_out = train.train_test_split(test_size=args.validation_fraction, seed=seed)
        train, validation = held_out["train"], held_out["test"]

    if args.max_train_samples is not None:
        if isinstance(train, IterableDataset):
            train = train.take(args.max_train_samples)
        else:
            train = train.select(range(min(args.max_train_samples, len(train))))
    return train, validation


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


# ---------------------------------------------------------------------------------------------
# Bad images


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


class UnreadableImageCounter:
    """Counts images that fail to decode, warns about the first few, and raises
    `TooManyUnreadableImagesError` once more than `max_fraction` of at least `min_seen` fail."""

    max_warnings = 10

    def __init__(self, max_fraction: float, min_seen: int = 100, kind: str = "image", column_flag: str = "--image_column"):
        self.max_fraction = max_fraction
        self.min_seen = min_seen
        # What is counted, for the messages: the speech data counts audio clips with the same rule.
        self.kind = kind
        self.column_flag = column_flag
        self.seen = 0
        self.unreadable = 0

    def record(self, error: UnreadableImageError | None) -> None:
        self.seen += 1
        if error is None:
            return
        self.unreadable += 1
        if self.unreadable <= self.max_warnings:
            logger.warning("skipping an unreadable %s (%s so far): %s", self.kind, self.unreadable, error)
        self.check(final=False)

    def check(self, final: bool = True) -> None:
        if self.seen and (final or self.seen >= self.min_seen) and self.unreadable > self.max_fraction * self.seen:
            raise TooManyUnreadableImagesError(
                f"{self.unreadable} of {self.seen} {self.kind}s could not be decoded, more than the allowed "
                f"share {self.max_fraction:g} (--max_unreadable_fraction); is {self.column_flag} right, is the data intact?"
            )


def drop_unreadable(dataset: Dataset, column: str, decode, unreadable_error: type[Exception], counter: "UnreadableImageCounter") -> Dataset:
    """The rows of `dataset` whose `column` decodes (`decode` raises `unreadable_error` otherwise); warns with the
    count of those skipped and raises `TooManyUnreadableImagesError` when `counter` allows fewer. Images and speech
    check their data sets here."""

    def readable(values):
        flags = []
        for value in values:
            try:
                decode(value)
                flags.append(True)
            except unreadable_error as error:
                logger.warning("skipping an unreadable %s: %s", counter.kind, error)
                flags.append(False)
        return flags

    kept = dataset.filter(readable, input_columns=[column], batched=True, desc=f"checking {counter.kind}s")
    counter.seen, counter.unreadable = len(dataset), len(dataset) - len(kept)
    if counter.unreadable:
        logger.warning("skipped %s unreadable %ss of %s", counter.unreadable, counter.kind, counter.seen)
    counter.check()
    return kept


def drop_unreadable_images(dataset: Dataset, image_column: str, max_fraction: float) -> Dataset:
    """The images of `dataset` that decode (`drop_unreadable`)."""
    return drop_unreadable(dataset, image_column, decode_image, UnreadableImageError, UnreadableImageCounter(max_fraction))


# ---------------------------------------------------------------------------------------------
# Preprocessing


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


def example_rng(seed: int, *position: int) -> np.random.Generator:
    """The generator of one example's augmentations, a pure function of its position."""
    return np.random.default_rng([seed, *position])


class SeededExamples(torch.utils.data.Dataset):
    """A map-style data set of training examples: row `index` decoded (`decode`, which raises `unreadable_error`)
    and made an example (`example`) with the random choices (crop, flip) drawn from (seed, epoch, index). Call
    `set_epoch` before each epoch (`DataLoaderShard.set_epoch` does). Images and speech say only how a row decodes
    and becomes an example; `StreamingExamples` streams the same examples."""

    unreadable_error: type[Exception] = UnreadableImageError

    def __init__(self, dataset: Dataset | IterableDataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[int(index)]
        return self.example(self.decode(row), row, example_rng(self.seed, self.epoch, index))

    def unreadable_counter(self, max_fraction: float) -> "UnreadableImageCounter":
        return UnreadableImageCounter(max_fraction)

    def decode(self, row: dict):
        raise NotImplementedError

    def example(self, decoded, row: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError


class StreamingExamples(torch.utils.data.IterableDataset):
    """The examples of a `SeededExamples` over a streamed data set, skipping (and counting) rows that fail to
    decode; the random choices of each come from (seed, epoch, worker, position). `datasets` splits the stream's
    shards among the loader's workers by itself."""

    def __init__(self, examples: SeededExamples, max_unreadable_fraction: float = 0.01):
        self.examples = examples
        self.max_unreadable_fraction = max_unreadable_fraction

    def set_epoch(self, epoch: int) -> None:
        self.examples.set_epoch(epoch)
        self.examples.dataset.set_epoch(epoch)

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        examples = self.examples
        counter = examples.unreadable_counter(self.max_unreadable_fraction)
        for position, row in enumerate(examples.dataset):
            try:
                decoded = examples.decode(row)
            except examples.unreadable_error as error:
                counter.record(error)
                continue
            counter.record(None)
            yield examples.example(decoded, row, example_rng(examples.seed, examples.epoch, worker_id, position))
        counter.check()


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


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation of the indices drawn from (seed, epoch): the same on every process, in every
    run, and again after a resume."""

    def __init__(self, num_examples: int, seed: int):
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples).tolist())


def collate_examples(examples: list[dict]) -> dict:
    batch = {"pixel_values": torch.stack([example["pixel_values"] for example in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([example["labels"] for example in examples])
    return batch


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
    counter = UnreadableImageCounter(max_unreadable_fraction)
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
