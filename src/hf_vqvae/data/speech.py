"""Speech data sets for training the audio VQ-VAE: Hub / `audiofolder` / `save_to_disk` / streamed data sets with a
`datasets.Audio` column and a speaker column (the flite default of `flite_speech` without flags), the speakers' ids,
and seeded random crops as examples and their loaders; unreadable clips are skipped and counted as unreadable images
are (`examples`). Decoding is `audio_files`'.
"""

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict, Value
from datasets.distributed import split_dataset_by_node

from ..argument_checks import check_at_least, check_in_range
from ..models.audio_vqvae.loudness import normalize_loudness
from .audio_files import AUDIO_EXTENSIONS, SAMPLING_RATE, UnreadableAudioError, decode_audio, decode_for_model
from .examples import (
    EpochShuffleSampler,
    SeededExamples,
    StreamingExamples,
    UnreadableCounter,
    collate_examples,
    drop_unreadable,
)
from .flite_speech import DEFAULT_SPEECH_DATASET_NAME, make_default_speech_dataset
from .speech_augmentation import SpeechAugmentation
from .splits import STREAM_SHARDS, VALIDATION_SPLIT_NAMES, load_named_dataset, training_and_validation_splits


logger = logging.getLogger(__name__)


@dataclass
class SpeechDataArguments:
    """Which speech data set a run reads and how (the image data's flag names where they mean the same)."""

    _argument_group_name = "data"

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A data set on the Hub with an Audio column, or a local folder written by `save_to_disk`. Without "
            f"it (and without --train_data_dir) the {DEFAULT_SPEECH_DATASET_NAME} set is synthesised (needs flite)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The configuration of --dataset_name."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where `datasets` caches downloads and processed files."})
    train_data_dir: str | None = field(
        default=None, metadata={"help": "A local folder of audio files; each file's folder names its speaker."}
    )
    audio_column: str = field(default="audio", metadata={"help": "The column holding the audio."})
    speaker_column: str | None = field(
        default=None,
        metadata={
            "help": "The column naming each clip's speaker (a ClassLabel, or values mapped to ids in sorted order); "
            "without it the model has no speaker conditioning. 'speaker' for the default set, 'label' for "
            "--train_data_dir."
        },
    )
    streaming: bool = field(
        default=False, metadata={"help": "Stream the data set; shards are split across processes. Needs --max_train_steps."}
    )
    validation_split: str | None = field(
        default=None,
        metadata={"help": f"The split to validate on; by default the first of {VALIDATION_SPLIT_NAMES} that exists."},
    )
    validation_fraction: float = field(
        default=0.05, metadata={"help": "Share of the training split held out when the data set has no validation split."}
    )
    max_validation_samples: int = field(default=32, metadata={"help": "Validation clips used for the metrics."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training split."})
    segment_length: int = field(
        default=4096, metadata={"help": "Samples per training crop; a multiple of the model's hop length."}
    )
    default_minutes_per_speaker: float = field(
        default=3.0, metadata={"help": "Minutes per voice of the synthesised default set."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes loading data."})
    max_unreadable_fraction: float = field(
        default=0.01,
        metadata={"help": "Unreadable clips are skipped with a warning; the run stops if more than this share fails."},
    )
    noise_probability: float = field(
        default=0.0,
        metadata={
            "help": "Share of training clips recorded again with added noise of a random colour (white to brown) at "
            "an SNR drawn from --noise_snr_db, before loudness normalisation and cropping; 0 trains on the clips as "
            "they are. Seeded by --seed, the epoch and the clip."
        },
    )
    noise_snr_db: list[float] = field(
        default_factory=lambda: [10.0, 30.0],
        metadata={"help": "MIN MAX: the range the added noise's signal-to-noise ratio (dB, against the speech's gated "
                          "level) is drawn from.", "nargs": 2},
    )
    reverb_probability: float = field(
        default=0.0,
        metadata={
            "help": "Share of training clips played again through a synthetic room (a decaying noise tail) with a "
            "reverberation time drawn from --reverb_rt60_seconds; 0 switches it off. Applied before the noise."
        },
    )
    reverb_rt60_seconds: list[float] = field(
        default_factory=lambda: [0.1, 0.8],
        metadata={"help": "MIN MAX: the range the room's reverberation time (s, 60 dB decay) is drawn from.", "nargs": 2},
    )

    def __post_init__(self):
        check_in_range(self, "validation_fraction", 0, 1, low_open=True, high_open=True)
        check_at_least(self, "max_validation_samples", 1)
        check_at_least(self, "max_train_samples", 1, optional=True)
        check_at_least(self, "segment_length", 1)
        check_in_range(self, "default_minutes_per_speaker", 0, float("inf"), low_open=True, high_open=True)
        check_at_least(self, "dataloader_num_workers", 0)
        check_in_range(self, "max_unreadable_fraction", 0, 1)
        if self.dataset_name and self.train_data_dir:
            raise ValueError("pass either --dataset_name or --train_data_dir, not both")
        self.augmentation  # refuses bad settings now, not when the first clip is loaded

    @property
    def augmentation(self) -> SpeechAugmentation:
        """The noise and reverberation the training clips get."""
        return SpeechAugmentation(
            self.noise_probability, tuple(self.noise_snr_db), self.reverb_probability, tuple(self.reverb_rt60_seconds)
        )

    @property
    def speaker_column_or_default(self) -> str | None:
        """--speaker_column, else the speaker column of the default set or of an audio folder."""
        if self.speaker_column is not None or self.dataset_name:
            return self.speaker_column
        return "label" if self.train_data_dir else "speaker"


@dataclass
class SpeechDatasets:
    """The training and validation splits (audio left undecoded) and how speakers are named."""

    train: Dataset | IterableDataset
    validation: Dataset | IterableDataset
    audio_column: str
    speaker_column: str | None
    speaker_names: list[str] | None
    name: str


def load_speech_splits(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | None = None,
    cache_dir: str | None = None,
    streaming: bool = False,
    default_minutes_per_speaker: float = 3.0,
    seed: int = 0,
) -> tuple:
    """(splits, name) of a `save_to_disk` folder or Hub data set, an `audiofolder`, or the synthesised default."""
    if dataset_name:
        return load_named_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, streaming=streaming), dataset_name
    if train_data_dir:
        if not os.path.isdir(train_data_dir):
            raise ValueError(f"--train_data_dir {train_data_dir!r} is not a folder")
        splits = DatasetDict(train=audio_folder_dataset(train_data_dir))
        if streaming:
            splits = IterableDatasetDict({"train": splits["train"].to_iterable_dataset(num_shards=STREAM_SHARDS)})
        return splits, Path(train_data_dir).name
    if streaming:
        raise ValueError("--streaming needs --dataset_name or --train_data_dir; the default data set is in memory")
    return make_default_speech_dataset(default_minutes_per_speaker, seed=seed), DEFAULT_SPEECH_DATASET_NAME


METADATA_FILE = "metadata.csv"


def audio_folder_dataset(folder: str | os.PathLike) -> Dataset:
    """The audio files under `folder` as datasets' `audiofolder` lays them out, read without `datasets`' audio
    encoding, which needs torchcodec: each file's parent folder names its speaker, in a `label` ClassLabel column; with
    a `metadata.csv` at the top (a `file_name` column, relative to the folder, and any others, e.g. `speaker`), the
    files it lists, with its other columns as text."""
    root = Path(folder)
    metadata = read_metadata(root / METADATA_FILE) if (root / METADATA_FILE).is_file() else None
    if metadata is not None:
        paths = [root / name for name in metadata["file_name"]]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise ValueError(f"{root / METADATA_FILE} lists {len(missing)} file(s) that do not exist, e.g. {missing[0]!r}")
    else:
        paths = sorted(path for path in root.rglob("*") if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file())
    if not paths:
        raise ValueError(f"--train_data_dir {str(folder)!r} holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
    speakers = sorted({path.parent.name for path in paths})
    features = {"audio": {"bytes": Value("binary"), "path": Value("string")}, "label": ClassLabel(names=speakers)}
    rows = {
        "audio": [{"bytes": None, "path": str(path)} for path in paths],
        "label": [speakers.index(path.parent.name) for path in paths],
    }
    for column, values in (metadata or {}).items():
        if column != "file_name":
            features[column], rows[column] = Value("string"), values
    return Dataset.from_dict(rows, features=Features(features)).cast_column("audio", Audio())


def read_metadata(path: Path) -> dict[str, list[str]]:
    """The columns of an audiofolder's `metadata.csv`, which must have a `file_name` column."""
    with open(path, newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    columns = list(table[0]) if table else []
    if "file_name" not in columns:
        raise ValueError(f"{path} needs a file_name column (as datasets' audiofolder reads it); its columns are {columns}")
    return {column: [row[column] for row in table] for column in columns}


def speaker_names_of(dataset: Dataset | IterableDataset, speaker_column: str | None) -> list[str] | None:
    """The speakers' names in id order: a `ClassLabel`'s names, else the sorted distinct values of the column (a
    stream's values cannot be listed up front, so it needs a `ClassLabel`)."""
    if speaker_column is None:
        return None
    feature = (dataset.features or {}).get(speaker_column)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            f"the speaker column {speaker_column!r} of a streamed data set must be a ClassLabel so speaker ids are "
            "known up front; cast it with dataset.cast_column"
        )
    return sorted({str(value) for value in dataset[speaker_column]})


def check_speech_columns(dataset, audio_column: str, speaker_column: str | None) -> None:
    """Raise a `ValueError` listing the columns when a requested one is missing."""
    columns = dataset.column_names
    if columns is None:
        columns = list(next(iter(dataset), {}))
    for flag, column in (("--audio_column", audio_column), ("--speaker_column", speaker_column)):
        if column is not None and column not in columns:
            raise ValueError(f"{flag} {column!r} is not a column of the data set; its columns are {columns}")


def undecoded_audio(dataset, audio_column: str = "audio"):
    """The data set (or each split of a `DatasetDict`) with its `Audio` column's bytes/path kept, so that decoding
    happens in `decode_audio`: datasets decodes an `Audio` column only through torchcodec, which this package does
    not need."""
    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return type(dataset)({split: undecoded_audio(data, audio_column) for split, data in dataset.items()})
    feature = (dataset.features or {}).get(audio_column)
    if isinstance(feature, Audio) and feature.decode:
        return dataset.cast_column(audio_column, Audio(sampling_rate=feature.sampling_rate, decode=False))
    return dataset


class SpeakerIds:
    """A row's speaker as an id: a `ClassLabel` is already one; other values are looked up by name."""

    def __init__(self, speaker_column: str | None, speaker_names: list[str] | None, is_class_label: bool):
        self.speaker_column = speaker_column
        self.lookup = None if is_class_label or speaker_names is None else {name: i for i, name in enumerate(speaker_names)}

    def __call__(self, row: dict) -> int | None:
        if self.speaker_column is None:
            return None
        value = row[self.speaker_column]
        if self.lookup is None:
            return int(value)
        if str(value) not in self.lookup:
            raise ValueError(f"unknown speaker {value!r} in the data; the speakers are {sorted(self.lookup)}")
        return self.lookup[str(value)]


def speaker_ids_for(datasets: SpeechDatasets) -> SpeakerIds:
    feature = (datasets.train.features or {}).get(datasets.speaker_column) if datasets.speaker_column else None
    return SpeakerIds(datasets.speaker_column, datasets.speaker_names, isinstance(feature, ClassLabel))


def load_speech_datasets(args: SpeechDataArguments, seed: int = 0) -> SpeechDatasets:
    """The data set `args` describe, with a validation split and the speakers' names."""
    splits, name = load_speech_splits(
        args.dataset_name, args.dataset_config_name, args.train_data_dir, args.cache_dir, args.streaming,
        args.default_minutes_per_speaker, seed,
    )
    train, validation = training_and_validation_splits(splits, args, name, seed)
    speaker_column = args.speaker_column_or_default
    check_speech_columns(train, args.audio_column, speaker_column)
    check_speech_columns(validation, args.audio_column, speaker_column)
    return SpeechDatasets(
        undecoded_audio(train, args.audio_column), undecoded_audio(validation, args.audio_column), args.audio_column,
        speaker_column, speaker_names_of(train, speaker_column), name,
    )


def random_crop(waveform: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """`length` samples of the clip: a random window with `rng`, else the middle one; shorter clips are padded
    with silence at the end."""
    if len(waveform) < length:
        return np.pad(waveform, (0, length - len(waveform)))
    start = rng.integers(len(waveform) - length + 1) if rng is not None else (len(waveform) - length) // 2
    return waveform[start : start + length]


class TrainingSpeech(SeededExamples):
    """Training crops (`input_values`, optional `speaker_ids`) of a speech data set; the crop of example `index`
    (and its noise and room, with an active `augmentation`) is drawn from (seed, epoch, index), from the whole clip,
    degraded first, then scaled to `loudness_target_db` (None: as recorded), as a user's recording reaches the
    model through its feature extractor."""

    unreadable_error = UnreadableAudioError

    def __init__(
        self, dataset: Dataset | IterableDataset, audio_column: str, speaker_ids: SpeakerIds, segment_length: int,
        seed: int, sampling_rate: int, loudness_target_db: float | None = None,
        augmentation: SpeechAugmentation | None = None,
    ):
        super().__init__(dataset, seed)
        self.audio_column = audio_column
        self.speaker_ids = speaker_ids
        self.segment_length = segment_length
        self.sampling_rate = sampling_rate
        self.loudness_target_db = loudness_target_db
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None

    def unreadable_counter(self, max_fraction: float) -> UnreadableCounter:
        return audio_counter(max_fraction)

    def decode(self, row: dict) -> np.ndarray:
        # An augmented clip is scaled after its noise and room are added, in `example`, where the draw is known.
        target_db = self.loudness_target_db if self.augmentation is None else None
        return decode_for_model(row[self.audio_column], self.sampling_rate, target_db)

    def example(self, waveform: np.ndarray, row: dict, rng: np.random.Generator) -> dict:
        if self.augmentation is not None:
            waveform = self.augmentation(waveform, self.sampling_rate, rng)
            if self.loudness_target_db is not None:
                waveform = normalize_loudness(waveform, self.sampling_rate, self.loudness_target_db)[0]
        return speech_example(random_crop(waveform, self.segment_length, rng), self.speaker_ids(row))


class StreamingTrainingSpeech(StreamingExamples):
    """`TrainingSpeech` of a streamed data set."""

    def __init__(
        self, dataset: IterableDataset, audio_column: str, speaker_ids: SpeakerIds, segment_length: int, seed: int,
        sampling_rate: int, max_unreadable_fraction: float = 0.01, loudness_target_db: float | None = None,
        augmentation: SpeechAugmentation | None = None,
    ):
        super().__init__(
            TrainingSpeech(
                dataset, audio_column, speaker_ids, segment_length, seed, sampling_rate, loudness_target_db, augmentation
            ),
            max_unreadable_fraction,
        )


def speech_example(crop: np.ndarray, speaker_id: int | None) -> dict:
    """One example as the loaders yield it: `input_values` (samples,) and, with speakers, `speaker_ids`."""
    example = {"input_values": torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))}
    if speaker_id is not None:
        example["speaker_ids"] = speaker_id
    return example


def audio_counter(max_fraction: float) -> UnreadableCounter:
    """The count of the audio clips that do not decode."""
    return UnreadableCounter(max_fraction, kind="audio clip", column_flag="--audio_column")


def drop_unreadable_audio(dataset: Dataset, audio_column: str, max_fraction: float, sampling_rate: int) -> Dataset:
    """The clips of `dataset` that decode (`examples.drop_unreadable`)."""
    return drop_unreadable(
        dataset, audio_column, lambda value: decode_audio(value, sampling_rate), UnreadableAudioError, audio_counter(max_fraction)
    )


def speech_dataloader(
    datasets: SpeechDatasets,
    *,
    segment_length: int,
    batch_size: int,
    seed: int,
    sampling_rate: int = SAMPLING_RATE,
    num_workers: int = 0,
    max_unreadable_fraction: float = 0.01,
    process_index: int = 0,
    num_processes: int = 1,
    loudness_target_db: float | None = None,
    augmentation: SpeechAugmentation | None = None,
) -> torch.utils.data.DataLoader:
    """The training loader: a map-style data set is checked for unreadable clips up front and shuffled by
    `EpochShuffleSampler` (Accelerate's `prepare` shards its batches); a stream is split by shards across processes
    here and checked as it streams. Clips get `augmentation`'s noise and room, then are scaled to
    `loudness_target_db` before cropping (None: as recorded)."""
    speaker_ids = speaker_ids_for(datasets)
    if isinstance(datasets.train, IterableDataset):
        stream = split_dataset_by_node(datasets.train.shuffle(seed=seed), rank=process_index, world_size=num_processes)
        examples = StreamingTrainingSpeech(
            stream, datasets.audio_column, speaker_ids, segment_length, seed, sampling_rate, max_unreadable_fraction,
            loudness_target_db, augmentation,
        )
        sampler = None
    else:
        readable = drop_unreadable_audio(datasets.train, datasets.audio_column, max_unreadable_fraction, sampling_rate)
        if len(readable) == 0:
            raise ValueError(f"the training split of {datasets.name!r} holds no readable audio clip")
        examples = TrainingSpeech(
            readable, datasets.audio_column, speaker_ids, segment_length, seed, sampling_rate, loudness_target_db,
            augmentation,
        )
        sampler = EpochShuffleSampler(len(examples), seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_examples,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def validation_clips(
    datasets: SpeechDatasets, segment_length: int, max_samples: int, sampling_rate: int = SAMPLING_RATE,
    max_unreadable_fraction: float = 0.01, loudness_target_db: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The middle `segment_length` samples of the first `max_samples` readable validation clips, (N, segment_length),
    each clip scaled to `loudness_target_db` first (None: as recorded), and their speaker ids (None without a speaker
    column)."""
    speaker_ids = speaker_ids_for(datasets)
    counter = audio_counter(max_unreadable_fraction)
    crops, speakers = [], []
    for row in datasets.validation:
        try:
            waveform = decode_for_model(row[datasets.audio_column], sampling_rate, loudness_target_db)
        except UnreadableAudioError as error:
            counter.record(error)
            continue
        counter.record(None)
        crops.append(torch.from_numpy(random_crop(waveform, segment_length, None).copy()))
        speakers.append(speaker_ids(row))
        if len(crops) == max_samples:
            break
    counter.check()
    if not crops:
        raise ValueError("the validation split holds no readable audio clip")
    return torch.stack(crops), (torch.tensor(speakers) if speakers[0] is not None else None)
