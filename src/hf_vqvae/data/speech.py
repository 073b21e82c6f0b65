"""Speech data sets for training the audio VQ-VAE: the offline multi-speaker default synthesised with flite, Hub /
`audiofolder` / `save_to_disk` / streamed data sets with a `datasets.Audio` column and a speaker column, decoding
(unreadable clips skipped and counted, as unreadable images are), and seeded random crops.

Audio is decoded here with `soundfile` (the `.[audio]` extra) rather than by `datasets`, whose `Audio` decoding
needs torchcodec and FFmpeg; WAV files decode with the standard library when soundfile is missing.

As for images, every random choice (an epoch's shuffle, an example's crop) comes from a generator seeded by
(seed, epoch, position), so batches do not depend on the number of loader workers and a resumed run goes on with
exactly the batches it would have met.
"""

import argparse
import io
import logging
import os
import random
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    Sequence,
    Value,
)
from datasets.distributed import split_dataset_by_node

from ..models.audio_vqvae.feature_extraction_audio_vqvae import resample
from ..models.audio_vqvae.loudness import normalize_loudness
from ..training.arguments import check_at_least, check_in_range
from .images import (
    STREAM_SHARDS,
    VALIDATION_SPLIT_NAMES,
    EpochShuffleSampler,
    SeededExamples,
    StreamingExamples,
    UnreadableImageCounter,
    drop_unreadable,
    load_named_dataset,
    training_and_validation_splits,
)


logger = logging.getLogger(__name__)

DEFAULT_SPEECH_DATASET_NAME = "flite multi-speaker speech"
SAMPLING_RATE = 16000

# flite's 16 kHz voices: awb (Scottish English, male), rms (US English, male) and slt (US English, female) were
# built from recordings of real speakers (CMU ARCTIC); kal16 is a diphone voice (US English, male).
FLITE_VOICES = ("awb", "rms", "slt", "kal16")

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")

# Words of the synthesised sentences: a seeded generator combines them into distinct, speakable sentences.
SUBJECTS = (
    "the old man", "a young girl", "the farmer", "my neighbour", "the captain", "a tired doctor", "the small dog",
    "her brother", "the teacher", "a quiet student", "the baker", "our driver", "the painter", "a clever fox",
    "the pilot", "his mother", "the gardener", "a busy clerk", "the singer", "the fisherman",
)
VERBS = (
    "carried", "painted", "found", "opened", "cleaned", "watched", "moved", "bought", "fixed", "dropped", "counted",
    "hid", "measured", "packed", "pulled", "lifted", "sold", "noticed", "borrowed", "brought",
)
OBJECTS = (
    "a heavy box", "the red door", "seven apples", "the broken chair", "a long letter", "the blue kettle",
    "three candles", "the wooden fence", "a golden ring", "the empty basket", "a yellow kite", "the frozen pond",
    "two silver coins", "the dusty map", "a warm blanket", "the green bottle", "nine pencils", "the tall ladder",
)
PLACES = (
    "near the river", "before dinner", "in the morning", "behind the station", "under the bridge", "after the storm",
    "at the market", "on a cold night", "beside the harbour", "during the summer", "across the valley",
    "inside the barn", "along the beach", "by the church", "in the kitchen", "at noon",
)


class SpeechSynthesizerMissingError(RuntimeError):
    """The speech synthesiser that makes the default data set is not installed."""


class UnreadableAudioError(ValueError):
    """An audio file that cannot be decoded (corrupt, truncated, not audio)."""


# ---------------------------------------------------------------------------------------------
# The default data set, synthesised offline


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences drawn from the vocabulary above by a seeded generator."""
    rng = random.Random(seed)
    chosen, seen = [], set()
    while len(chosen) < count:
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
        if sentence not in seen:
            seen.add(sentence)
            chosen.append(sentence[0].upper() + sentence[1:])
    return chosen


def flite_executable() -> str:
    """The path of `flite`, or a clear error saying how to install it."""
    path = shutil.which("flite")
    if path is None:
        raise SpeechSynthesizerMissingError(
            "the default speech data set is synthesised with flite, which is not installed; install it with "
            "`apt-get install -y flite` (Debian/Ubuntu), or train on your own data with --dataset_name"
        )
    return path


def synthesize(text: str, voice: str, folder: str | os.PathLike, flite: str) -> dict:
    """One utterance by flite: the WAV file's bytes, its duration, and the phonemes with their end times (s)."""
    path = Path(folder) / f"{voice}-{abs(hash(text))}.wav"
    result = subprocess.run(
        [flite, "-voice", voice, "-psdur", "-t", text, "-o", str(path)], capture_output=True, text=True, check=True
    )
    phonemes, ends = [], []
    for item in result.stdout.split():
        name, _, end = item.rpartition(":")
        phonemes.append(name)
        ends.append(float(end))
    wav_bytes = path.read_bytes()
    path.unlink()
    with wave.open(io.BytesIO(wav_bytes)) as reader:
        if reader.getframerate() != SAMPLING_RATE:
            raise RuntimeError(f"flite voice {voice!r} speaks at {reader.getframerate()} Hz, not {SAMPLING_RATE}")
        duration = reader.getnframes() / reader.getframerate()
    return {"audio": {"bytes": wav_bytes, "path": None}, "duration": duration, "phonemes": phonemes, "phoneme_ends": ends}


def make_default_speech_dataset(
    minutes_per_speaker: float = 3.0,
    voices: tuple[str, ...] = FLITE_VOICES,
    validation_fraction: float = 0.1,
    seed: int = 0,
    num_workers: int = 2,
) -> DatasetDict:
    """A multi-speaker read-speech set synthesised by flite, no network needed: every voice reads its own seeded
    sentences until it has spoken `minutes_per_speaker` minutes.

    Columns: `audio` (`datasets.Audio`, 16 kHz WAV), `speaker` (`ClassLabel` of the voices), `text`, `phonemes`
    and `phoneme_ends` (flite's phone labels and their end times in seconds), `duration` (s). Splits `train` and
    `validation`, stratified by speaker.
    """
    flite = flite_executable()
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    unknown = sorted(set(voices) - set(FLITE_VOICES))
    if unknown:
        raise ValueError(f"unknown flite voices {unknown}; the 16 kHz voices are {list(FLITE_VOICES)}")
    # A sentence lasts about 2.7 s; ask for enough, then keep each voice's first ones up to its minutes.
    per_voice = max(4, int(minutes_per_speaker * 60 / 2.0) + 2)
    jobs = [(voice, text) for index, voice in enumerate(voices) for text in sentences(per_voice, seed * 1000 + index)]
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(max(1, num_workers)) as pool:
        utterances = list(pool.map(lambda job: synthesize(job[1], job[0], folder, flite), jobs))
    rows = {"audio": [], "speaker": [], "text": [], "phonemes": [], "phoneme_ends": [], "duration": []}
    spoken = dict.fromkeys(voices, 0.0)
    for (voice, text), utterance in zip(jobs, utterances):
        if spoken[voice] >= minutes_per_speaker * 60:
            continue
        spoken[voice] += utterance["duration"]
        rows["speaker"].append(voices.index(voice))
        rows["text"].append(text)
        for key in ("audio", "phonemes", "phoneme_ends", "duration"):
            rows[key].append(utterance[key])
    # Built with the Audio column's storage type and cast afterwards: `datasets` encodes Audio values through
    # torchcodec even when they are already WAV bytes.
    features = Features({
        "audio": {"bytes": Value("binary"), "path": Value("string")},
        "speaker": ClassLabel(names=list(voices)),
        "text": Value("string"),
        "phonemes": Sequence(Value("string")),
        "phoneme_ends": Sequence(Value("float32")),
        "duration": Value("float32"),
    })
    speech = Dataset.from_dict(rows, features=features).cast_column(
        "audio", Audio(sampling_rate=SAMPLING_RATE, decode=False)
    )
    # At least one held-out utterance per speaker, so conversion can be measured on every voice.
    held_out = max(len(voices), round(validation_fraction * len(speech)))
    split = speech.train_test_split(test_size=held_out, seed=seed, stratify_by_column="speaker")
    return DatasetDict(train=split["train"], validation=split["test"])


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_audio(value, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """A float32 mono waveform at `sampling_rate` from what a data set stores: `Audio(decode=False)`'s
    `{"bytes", "path"}`, `{"array", "sampling_rate"}`, raw bytes or a file path. Several channels are averaged;
    other rates are resampled. Raises `UnreadableAudioError` on anything that does not decode."""
    try:
        if isinstance(value, dict) and value.get("array") is not None:
            waveform, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        else:
            if isinstance(value, dict):
                source = value.get("bytes") or value.get("path")
            else:
                source = value
            if source is None:
                raise ValueError("neither bytes nor a path")
            waveform, rate = _read_audio_file(io.BytesIO(source) if isinstance(source, bytes) else source)
        if waveform.ndim == 2:
            waveform = waveform.mean(axis=1)
        if waveform.size == 0:
            raise ValueError("the clip is empty")
        if rate != sampling_rate:
            waveform = resample(waveform, rate, sampling_rate)
        return np.clip(waveform.astype(np.float32), -1.0, 1.0)
    except (OSError, ValueError, RuntimeError, TypeError, EOFError, wave.Error) as error:
        raise UnreadableAudioError(f"cannot decode audio {_describe(value)}: {error}") from error


def decode_for_model(value, sampling_rate: int, loudness_target_db: float | None) -> np.ndarray:
    """`decode_audio`, then the whole clip scaled to the gated level `loudness_target_db` (dBFS) as the audio
    VQ-VAE's feature extractor scales it (None: the clip's own level)."""
    waveform = decode_audio(value, sampling_rate)
    if loudness_target_db is None:
        return waveform
    return normalize_loudness(waveform, sampling_rate, loudness_target_db)[0]


def _read_audio_file(source) -> tuple[np.ndarray, int]:
    """(samples, channels-last if several) and the rate, with soundfile, else WAV with the standard library."""
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is not None:
        waveform, rate = soundfile.read(source, dtype="float32", always_2d=False)
        return waveform, rate
    try:
        with wave.open(source if not isinstance(source, os.PathLike) else str(source)) as reader:
            width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except wave.Error as error:
        raise ValueError(f"{error}; only WAV decodes without soundfile: pip install 'hf-vqvae[audio]'") from error
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise ValueError(f"{8 * width}-bit WAV needs soundfile: pip install 'hf-vqvae[audio]'")
    samples = np.frombuffer(frames, dtype=dtype).astype(np.float32)
    samples = (samples - 128) / 128 if width == 1 else samples / float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels) if channels > 1 else samples, rate


def _describe(value) -> str:
    if isinstance(value, dict) and value.get("path"):
        return repr(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return repr(str(value))
    return f"of type {type(value).__name__}"


# ---------------------------------------------------------------------------------------------
# Loading


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


def audio_folder_dataset(folder: str | os.PathLike) -> Dataset:
    """The audio files under `folder` as datasets' `audiofolder` lays them out (each file's parent folder names its
    speaker, in a `label` ClassLabel column), read without `datasets`' audio encoding, which needs torchcodec."""
    root = Path(folder)
    paths = sorted(path for path in root.rglob("*") if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file())
    if not paths:
        raise ValueError(f"--train_data_dir {str(folder)!r} holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
    speakers = sorted({path.parent.name for path in paths})
    features = Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "label": ClassLabel(names=speakers)})
    rows = {
        "audio": [{"bytes": None, "path": str(path)} for path in paths],
        "label": [speakers.index(path.parent.name) for path in paths],
    }
    return Dataset.from_dict(rows, features=features).cast_column("audio", Audio(decode=False))


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


def undecoded_audio(dataset: Dataset | IterableDataset, audio_column: str) -> Dataset | IterableDataset:
    """Keep an `Audio` column's bytes/path so that decoding happens in `decode_audio`."""
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


# ---------------------------------------------------------------------------------------------
# Training examples


def random_crop(waveform: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """`length` samples of the clip: a random window with `rng`, else the middle one; shorter clips are padded
    with silence at the end."""
    if len(waveform) < length:
        return np.pad(waveform, (0, length - len(waveform)))
    start = rng.integers(len(waveform) - length + 1) if rng is not None else (len(waveform) - length) // 2
    return waveform[start : start + length]


class TrainingSpeech(SeededExamples):
    """Training crops (`input_values`, optional `speaker_ids`) of a speech data set; the crop of example `index`
    is drawn from (seed, epoch, index), from the clip scaled to `loudness_target_db` (None: as recorded)."""

    unreadable_error = UnreadableAudioError

    def __init__(
        self, dataset: Dataset | IterableDataset, audio_column: str, speaker_ids: SpeakerIds, segment_length: int,
        seed: int, sampling_rate: int, loudness_target_db: float | None = None,
    ):
        super().__init__(dataset, seed)
        self.audio_column = audio_column
        self.speaker_ids = speaker_ids
        self.segment_length = segment_length
        self.sampling_rate = sampling_rate
        self.loudness_target_db = loudness_target_db

    def unreadable_counter(self, max_fraction: float) -> UnreadableImageCounter:
        return audio_counter(max_fraction)

    def decode(self, row: dict) -> np.ndarray:
        return decode_for_model(row[self.audio_column], self.sampling_rate, self.loudness_target_db)

    def example(self, waveform: np.ndarray, row: dict, rng: np.random.Generator) -> dict:
        return speech_example(random_crop(waveform, self.segment_length, rng), self.speaker_ids(row))


class StreamingTrainingSpeech(StreamingExamples):
    """`TrainingSpeech` of a streamed data set."""

    def __init__(
        self, dataset: IterableDataset, audio_column: str, speaker_ids: SpeakerIds, segment_length: int, seed: int,
        sampling_rate: int, max_unreadable_fraction: float = 0.01, loudness_target_db: float | None = None,
    ):
        super().__init__(
            TrainingSpeech(dataset, audio_column, speaker_ids, segment_length, seed, sampling_rate, loudness_target_db),
            max_unreadable_fraction,
        )


def speech_example(crop: np.ndarray, speaker_id: int | None) -> dict:
    """One example as the loaders yield it: `input_values` (samples,) and, with speakers, `speaker_ids`."""
    example = {"input_values": torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))}
    if speaker_id is not None:
        example["speaker_ids"] = speaker_id
    return example


def collate_speech(examples: list[dict]) -> dict:
    batch = {"input_values": torch.stack([example["input_values"] for example in examples])}
    if "speaker_ids" in examples[0]:
        batch["speaker_ids"] = torch.tensor([example["speaker_ids"] for example in examples])
    return batch


def audio_counter(max_fraction: float) -> UnreadableImageCounter:
    """The unreadable-file counter of the image data, counting audio clips."""
    return UnreadableImageCounter(max_fraction, kind="audio clip", column_flag="--audio_column")


def drop_unreadable_audio(dataset: Dataset, audio_column: str, max_fraction: float, sampling_rate: int) -> Dataset:
    """The clips of `dataset` that decode (`data.images.drop_unreadable`)."""
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
) -> torch.utils.data.DataLoader:
    """The training loader: a map-style data set is checked for unreadable clips up front and shuffled by
    `EpochShuffleSampler` (Accelerate's `prepare` shards its batches); a stream is split by shards across processes
    here and checked as it streams. Clips are scaled to `loudness_target_db` before cropping (None: as recorded)."""
    speaker_ids = speaker_ids_for(datasets)
    if isinstance(datasets.train, IterableDataset):
        stream = split_dataset_by_node(datasets.train.shuffle(seed=seed), rank=process_index, world_size=num_processes)
        examples = StreamingTrainingSpeech(
            stream, datasets.audio_column, speaker_ids, segment_length, seed, sampling_rate, max_unreadable_fraction,
            loudness_target_db,
        )
        sampler = None
    else:
        readable = drop_unreadable_audio(datasets.train, datasets.audio_column, max_unreadable_fraction, sampling_rate)
        if len(readable) == 0:
            raise ValueError(f"the training split of {datasets.name!r} holds no readable audio clip")
        examples = TrainingSpeech(
            readable, datasets.audio_column, speaker_ids, segment_length, seed, sampling_rate, loudness_target_db
        )
        sampler = EpochShuffleSampler(len(examples), seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_speech,
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


# ---------------------------------------------------------------------------------------------
# scripts/make_speech_data.py


def parse_make_speech_data_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Synthesise the default multi-speaker speech data set with flite.")
    parser.add_argument("--output_dir", default="data/flite-speech", help="Where the `save_to_disk` folder goes.")
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
    """The data set `parse_make_speech_data_args` describes, saved to --output_dir (and pushed when asked)."""
    speech = make_default_speech_dataset(
        args.minutes_per_speaker, tuple(args.voices), args.validation_fraction, args.seed, args.num_workers
    )
    speech.save_to_disk(args.output_dir)
    minutes = {split: round(sum(data["duration"]) / 60, 2) for split, data in speech.items()}
    logger.info("saved %s to %s (minutes per split: %s)", DEFAULT_SPEECH_DATASET_NAME, args.output_dir, minutes)
    if args.push_to_hub:
        speech.push_to_hub(args.hub_dataset_id, token=args.hub_token)
    return speech


def wav_bytes(waveform: np.ndarray | torch.Tensor, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """A mono waveform (floats in [-1, 1]) as the bytes of a 16-bit PCM WAV file."""
    samples = np.clip(np.asarray(waveform, dtype=np.float32).reshape(-1), -1.0, 1.0)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sampling_rate)
        writer.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
