"""Code grids as a data set: the images of a data set encoded by a trained VQ-VAE, the training data
of the PixelCNN prior; or the speech of an audio data set encoded by an `AudioVQVAEModel`, cut into
fixed-length segments whose codes are one-row (1, L) grids.

A codes data set is a `DatasetDict` with the image data set's training and validation splits and
the columns

- `codes`: each image's (h, w) grid of codes as nested lists of int16 (int32 when K > 2**15);
- `label`: its class label, when the images have one (a `ClassLabel` is carried over as it is); for
  speech, the segment's speaker as the audio VQ-VAE's speaker id (a `ClassLabel` of its speaker names).

`codes_info.json` beside the splits (in the `save_to_disk` folder, and in the Hub repository)
names the VQ-VAE that wrote the codes, its K and grid, so that the prior's training script can
check a VQ-VAE against the codes and load the right one when none is given.

Under several processes (`accelerate launch`) each process encodes its share of the batches and
every process receives all the codes in the data set's order; the main process writes them.
"""

import dataclasses
from dataclasses import dataclass, field
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from huggingface_hub import HfApi, hf_hub_download
from tqdm.auto import tqdm

from ..models.audio_vqvae.configuration_audio_vqvae import AudioVQVAEConfig
from ..models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..models.vqvae.configuration_vqvae import VQVAEConfig
from .images import (
    ImageDataArguments,
    ImageTransform,
    TrainingImages,
    check_columns,
    collate_examples,
    drop_unreadable_images,
    load_image_datasets,
    load_named_dataset,
)
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from .speech import (
    SpeakerIds,
    SpeechDataArguments,
    UnreadableAudioError,
    audio_counter,
    collate_speech,
    decode_audio,
    load_speech_datasets,
    speaker_ids_for,
    speech_example,
)
from ..training.arguments import check_at_least, parse_arguments
from ..training.loop import create_accelerator, end_training


logger = logging.getLogger(__name__)

CODES_COLUMN = "codes"
LABEL_COLUMN = "label"
CODES_INFO_FILE = "codes_info.json"


@dataclasses.dataclass
class CodesInfo:
    """What a codes data set was encoded with."""

    vqvae: str  # the VQ-VAE's folder or Hub id
    num_embeddings: int
    grid_height: int
    grid_width: int
    image_dataset: str  # the name of the encoded data set (images, or speech for an audio VQ-VAE's codes)
    # Set for stage-2 codes of a hierarchy: the stage-1 VQ-VAE under the stage-2 model named by `vqvae`.
    stage1_vqvae: str | None = None

    @classmethod
    def of_vqvae(
        cls, config: VQVAEConfig | AudioVQVAEConfig, vqvae: str, image_dataset: str, sequence_length: int | None = None
    ) -> "CodesInfo":
        """The info of codes written by the VQ-VAE `vqvae` (its `config`); an audio VQ-VAE's codes are one-row grids
        of `sequence_length` codes (those of one segment)."""
        if isinstance(config, AudioVQVAEConfig):
            return cls(vqvae, *config.prior_code_grid(1, sequence_length), image_dataset)
        return cls(vqvae, *config.prior_code_grid(config.latent_size, config.latent_size), image_dataset)

    @classmethod
    def of_stage2(cls, config, stage2: str, stage1_vqvae: str, image_dataset: str) -> "CodesInfo":
        """The info of stage-2 codes written by the `HierarchicalVQVAEModel` `stage2` (its `config`)."""
        return cls(stage2, *config.prior_code_grid(*config.latent_grid), image_dataset, stage1_vqvae)

    def check_vqvae(self, config: VQVAEConfig | AudioVQVAEConfig, vqvae: str) -> None:
        """Raise a `ValueError` unless the VQ-VAE `vqvae` has the codebook size and grid of these codes (an audio
        VQ-VAE encodes clips of any length into one row of codes)."""
        if isinstance(config, AudioVQVAEConfig):
            theirs = (config.code_layout.prior_num_embeddings, 1, self.grid_width)
        else:
            theirs = config.prior_code_grid(config.latent_size, config.latent_size)
        ours = (self.num_embeddings, self.grid_height, self.grid_width)
        if theirs != ours:
            raise ValueError(
                f"the codes were written by the VQ-VAE {self.vqvae!r} with K={ours[0]} and {ours[1]}x{ours[2]} grids, "
                f"but the VQ-VAE {vqvae!r} has K={theirs[0]} and {theirs[1]}x{theirs[2]} grids; "
                "pass the VQ-VAE the codes were encoded with"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, dataset: str, cache_dir: str | None = None) -> "CodesInfo | None":
        """The info saved beside a codes data set (a `save_to_disk` folder or a Hub data set id), or None
        when it has none (codes written by other tools)."""
        if Path(dataset).is_dir():
            path = Path(dataset) / CODES_INFO_FILE
            if not path.is_file():
                return None
        else:
            try:
                path = hf_hub_download(dataset, CODES_INFO_FILE, repo_type="dataset", cache_dir=cache_dir)
            except OSError as error:  # not in the repository, or offline and not cached
                logger.info("no %s for the data set %r: %s", CODES_INFO_FILE, dataset, error)
                return None
        return cls.from_file(Path(path))

    @classmethod
    def from_file(cls, path: Path) -> "CodesInfo":
        """The info in a `codes_info.json`; a damaged file or one with other keys is a ValueError naming it."""
        fields = {field.name: field.type for field in dataclasses.fields(cls)}
        try:
            values = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path} is damaged (not valid JSON: {error}); write it again with scripts/extract_codes.py"
            ) from error
        if not isinstance(values, dict) or set(values) != set(fields):
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise ValueError(f"{path} must hold exactly the keys {sorted(fields)}, got {found}")
        for name, kind in fields.items():
            if not isinstance(values[name], kind) or isinstance(values[name], bool):
                raise ValueError(f"{path}: {name!r} must be of type {kind.__name__}, got {values[name]!r}")
        return cls(**values)


def load_vqvae(name_or_path: str, cache_dir: str | None = None) -> tuple[VQVAEModel, VQVAEImageProcessor]:
    """A trained VQ-VAE in eval mode and its image processor: the one saved with it, else one made
    for its resolution and channels."""
    vqvae = VQVAEModel.from_pretrained(name_or_path, cache_dir=cache_dir).eval()
    try:
        processor = VQVAEImageProcessor.from_pretrained(name_or_path, cache_dir=cache_dir)
    except OSError:
        processor = VQVAEImageProcessor.for_vqvae(vqvae.config)
    return vqvae, processor


def is_audio_vqvae(name_or_path: str, cache_dir: str | None = None) -> bool:
    """Whether the VQ-VAE `name_or_path` (a folder or a Hub id) is an `AudioVQVAEModel`, from its config."""
    config, _ = AudioVQVAEConfig.get_config_dict(name_or_path, cache_dir=cache_dir)
    return config.get("model_type") == AudioVQVAEConfig.model_type


def load_audio_vqvae(name_or_path: str, cache_dir: str | None = None) -> tuple[AudioVQVAEModel, AudioVQVAEFeatureExtractor]:
    """A trained audio VQ-VAE in eval mode and its feature extractor: the one saved with it, else one made for it."""
    vqvae = AudioVQVAEModel.from_pretrained(name_or_path, cache_dir=cache_dir).eval()
    try:
        feature_extractor = AudioVQVAEFeatureExtractor.from_pretrained(name_or_path, cache_dir=cache_dir)
    except OSError:
        feature_extractor = AudioVQVAEFeatureExtractor.for_model(vqvae.config)
    return vqvae, feature_extractor


# ---------------------------------------------------------------------------------------------
# Class labels


def class_label_column(dataset: Dataset, requested: str | None) -> str | None:
    """The column of class labels: `requested`, else `label` when it is a `ClassLabel` column, as in
    the default data set and most image classification sets on the Hub."""
    if requested is not None:
        return requested
    return LABEL_COLUMN if isinstance(dataset.features.get(LABEL_COLUMN), ClassLabel) else None


def check_label_feature(dataset: Dataset, column: str) -> None:
    feature = dataset.features[column]
    if not isinstance(feature, ClassLabel) and not (isinstance(feature, Value) and "int" in feature.dtype):
        raise ValueError(f"the label column {column!r} must hold class ids (a ClassLabel or integers), got {feature}")


def check_class_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise a `ValueError` when a label lies outside [0, num_classes) (datasets marks a missing label -1)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        raise ValueError(
            f"class labels of {where} must lie in [0, {num_classes}), found {outside[:10].tolist()} "
            "(-1 marks a missing label)"
        )


# ---------------------------------------------------------------------------------------------
# Encoding


def codes_features(num_embeddings: int, label_feature=None) -> Features:
    dtype = "int16" if num_embeddings <= 2**15 else "int32"
    features = {CODES_COLUMN: List(List(Value(dtype)))}
    if label_feature is not None:
        features[LABEL_COLUMN] = label_feature
    return Features(features)


@torch.no_grad()
def encode_images(
    vqvae: VQVAEModel,
    images: Dataset,
    image_column: str,
    label_column: str | None,
    transform: ImageTransform,
    accelerator: Accelerator,
    *,
    batch_size: int,
    num_workers: int = 0,
    max_unreadable_fraction: float = 0.01,
    description: str = "encoding",
) -> Dataset:
    """The codes (and labels) of the readable images of `images`, in their order, on every process.

    Each process encodes every `num_processes`-th batch; Accelerate pads the last round of batches
    with repeated images so every process has one, and `gather_for_metrics` drops that padding.
    """
    readable = drop_unreadable_images(images, image_column, max_unreadable_fraction)
    if len(readable) == 0:
        raise ValueError("no readable image to encode")
    if label_column is not None:
        check_label_feature(readable, label_column)
    # Center crops and no flips: `TrainingImages` draws no random numbers, so the seed is unused.
    examples = TrainingImages(readable, image_column, transform, seed=0, label_column=label_column)
    vqvae = vqvae.to(accelerator.device).eval()
    layout = vqvae.config.code_layout
    features = codes_features(layout.prior_num_embeddings, readable.features[label_column] if label_column else None)
    return encode_in_processes(
        examples, collate_examples, lambda batch: layout.to_prior_grid(vqvae.encode(batch["pixel_values"]).indices),
        "labels" if label_column else None, accelerator, features=features, items="images", batch_size=batch_size,
        num_workers=num_workers, description=description,
    )


def encode_in_processes(
    examples, collate_fn, encode, label_key: str | None, accelerator: Accelerator, *, features: Features, items: str,
    batch_size: int, num_workers: int = 0, description: str,
) -> Dataset:
    """The data set of the `codes` (and `label`) of every example, with `features`: each process encodes its share
    of the batches (`encode` on a collated batch, on the device), gathered from every process in the data set's
    order (`gather_for_metrics` drops the padding of the last round); an error names the `items` if any were lost
    or repeated. Images, speech and stage-2 codes all go through here."""
    loader = torch.utils.data.DataLoader(
        examples, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers,
        # A loader without a generator draws its seed from the global random state, which the
        # training that may follow must find as `set_seed` left it.
        generator=torch.Generator().manual_seed(0),
    )
    # The module-level `prepare_data_loader`: `Accelerator.prepare` would also add the loader to the
    # state that checkpoints save.
    loader = prepare_data_loader(
        loader, accelerator.device, num_processes=accelerator.num_processes, process_index=accelerator.process_index,
        put_on_device=True,
    )
    columns = {}
    for batch in tqdm(loader, desc=description, disable=not accelerator.is_local_main_process):
        encoded = {CODES_COLUMN: encode(batch)}
        if label_key is not None:
            encoded[LABEL_COLUMN] = batch[label_key]
        for name, values in accelerator.gather_for_metrics(encoded).items():
            columns.setdefault(name, []).append(values.cpu().numpy())
    encoded = Dataset.from_dict({name: np.concatenate(values) for name, values in columns.items()}, features=features)
    if len(encoded) != len(examples):
        raise RuntimeError(f"encoded {len(encoded)} {items} of {len(examples)}: the processes lost or repeated some")
    return encoded


@torch.no_grad()
def encode_code_grids(stage2, codes: Dataset, accelerator: Accelerator, *, batch_size: int, description: str = "encoding codes") -> Dataset:
    """The stage-2 codes of a split of stage-1 codes, encoded by a `HierarchicalVQVAEModel` (and its labels),
    split among the processes as `encode_images` does; every process receives all of them."""
    label_column = LABEL_COLUMN if LABEL_COLUMN in codes.column_names else None
    columns = [CODES_COLUMN] + ([label_column] if label_column else [])

    def collate(examples: list[dict]) -> dict:
        batch = {CODES_COLUMN: torch.from_numpy(np.stack([example[CODES_COLUMN] for example in examples])).long()}
        if label_column is not None:
            batch[LABEL_COLUMN] = torch.tensor([int(example[label_column]) for example in examples])
        return batch

    stage2 = stage2.to(accelerator.device).eval()
    layout = stage2.config.code_layout
    features = codes_features(layout.prior_num_embeddings, codes.features[label_column] if label_column else None)
    return encode_in_processes(
        codes.with_format("numpy", columns=columns), collate,
        lambda batch: layout.to_prior_grid(stage2.encode(batch[CODES_COLUMN]).indices),
        label_column, accelerator, features=features, items="code grids", batch_size=batch_size,
        description=description,
    )


def encode_image_dataset(
    args: ImageDataArguments,
    vqvae: VQVAEModel,
    processor: VQVAEImageProcessor,
    accelerator: Accelerator,
    *,
    batch_size: int,
    seed: int = 0,
) -> tuple[DatasetDict, str]:
    """The training and validation splits of the image data set `args` describe, as codes of center
    crops at the VQ-VAE's resolution, and the data set's name. The class labels of --label_column (else
    of a `ClassLabel` column named `label`) become the `label` column."""
    if args.streaming:
        raise ValueError("encoding a streamed data set is not supported; drop --streaming")
    args = at_vqvae_resolution(args, vqvae.config)
    with accelerator.main_process_first():
        image_datasets = load_image_datasets(args, seed=seed)
    label_column = class_label_column(image_datasets.train, args.label_column)
    transform = ImageTransform(processor, center_crop=True)
    splits = {}
    for name in ("train", "validation"):
        images = getattr(image_datasets, name)
        check_columns(images, image_datasets.image_column, label_column)
        splits[name] = encode_images(
            vqvae, images, image_datasets.image_column, label_column, transform, accelerator, batch_size=batch_size,
            num_workers=args.dataloader_num_workers, max_unreadable_fraction=args.max_unreadable_fraction,
            description=f"encoding {name}",
        )
    return DatasetDict(splits), image_datasets.name


# ---------------------------------------------------------------------------------------------
# Speech: the codes of fixed-length segments as one-row grids


def segments_per_clip(
    clips: Dataset, audio_column: str, segment_length: int, sampling_rate: int, max_unreadable_fraction: float
) -> list[int]:
    """How many segments each clip gives: its whole `segment_length`-sample segments, one for a clip shorter than
    a segment, none for a clip that does not decode (skipped and counted by the speech data's counter)."""
    counter = audio_counter(max_unreadable_fraction)
    counts = []
    for row in clips.select_columns([audio_column]):
        try:
            samples = len(decode_audio(row[audio_column], sampling_rate))
        except UnreadableAudioError as error:
            counter.record(error)
            counts.append(0)
            continue
        counter.record(None)
        counts.append(max(1, samples // segment_length))
    counter.check()
    return counts


class SpeechSegments(torch.utils.data.Dataset):
    """The segments of the clips of `clips` in order, clip by clip, as speech examples (`input_values` and, with
    `speaker_ids`, the speaker as the audio VQ-VAE's id, `speaker_to_vqvae[data's id]`). A clip shorter than one
    segment is padded with silence at its end; the samples after a clip's last whole segment are left out.
    Successive segments of a clip decode it once."""

    def __init__(
        self, clips: Dataset, audio_column: str, speaker_ids: SpeakerIds | None, speaker_to_vqvae: list[int] | None,
        segment_length: int, sampling_rate: int, counts: list[int],
    ):
        self.clips = clips
        self.audio_column = audio_column
        self.speaker_ids = speaker_ids
        self.speaker_to_vqvae = speaker_to_vqvae
        self.segment_length = segment_length
        self.sampling_rate = sampling_rate
        self.segments = [(clip, segment) for clip, count in enumerate(counts) for segment in range(count)]
        self._decoded_clip = None

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> dict:
        clip, segment = self.segments[int(index)]
        if self._decoded_clip is None or self._decoded_clip[0] != clip:
            row = self.clips[clip]
            speaker = self.speaker_ids(row) if self.speaker_ids is not None else None
            speaker = self.speaker_to_vqvae[speaker] if speaker is not None else None
            self._decoded_clip = (clip, decode_audio(row[self.audio_column], self.sampling_rate), speaker)
        _, waveform, speaker = self._decoded_clip
        start = segment * self.segment_length
        crop = waveform[start : start + self.segment_length]
        return speech_example(np.pad(crop, (0, self.segment_length - len(crop))), speaker)


def speakers_of_vqvae(config: AudioVQVAEConfig, speaker_names: list[str] | None) -> list[int] | None:
    """The audio VQ-VAE's id of each of the data's speakers (in the data's id order), matched by name when the
    VQ-VAE names its speakers; None when the codes carry no speaker (no speaker column, or a VQ-VAE without
    speakers). A speaker the VQ-VAE does not know is a `ValueError`."""
    if speaker_names is None or config.num_speakers == 0:
        return None
    if config.speaker_names is not None:
        unknown = [name for name in speaker_names if name not in config.speaker_names]
        if unknown:
            raise ValueError(
                f"the speakers {unknown} of the data are unknown to the audio VQ-VAE, whose speakers are "
                f"{config.speaker_names}; encode the speakers it was trained on"
            )
        return [config.speaker_names.index(name) for name in speaker_names]
    if len(speaker_names) != config.num_speakers:
        raise ValueError(
            f"the data has {len(speaker_names)} speakers but the audio VQ-VAE has num_speakers={config.num_speakers} "
            "(and no speaker_names to match them by); encode the data it was trained on"
        )
    return list(range(len(speaker_names)))


def speaker_label_feature(config: AudioVQVAEConfig) -> ClassLabel:
    """The `label` column of speech codes: the audio VQ-VAE's speaker ids, named as it names them."""
    if config.speaker_names is not None:
        return ClassLabel(names=list(config.speaker_names))
    return ClassLabel(num_classes=config.num_speakers)


@torch.no_grad()
def encode_speech(
    vqvae: AudioVQVAEModel,
    clips: Dataset,
    audio_column: str,
    speaker_ids: SpeakerIds | None,
    speaker_to_vqvae: list[int] | None,
    accelerator: Accelerator,
    *,
    segment_length: int,
    batch_size: int,
    num_workers: int = 0,
    max_unreadable_fraction: float = 0.01,
    description: str = "encoding speech",
) -> Dataset:
    """The codes of the segments of the readable clips of `clips` (`SpeechSegments`), (1, segment_length /
    hop_length) grids in their order, and with `speaker_to_vqvae` their speakers as the `label` column; split among
    the processes as `encode_images` does, and every process receives all of them."""
    config = vqvae.config
    if segment_length % config.hop_length:
        raise ValueError(
            f"--segment_length {segment_length} is not a multiple of the audio VQ-VAE's hop length {config.hop_length} "
            f"(samples per code); use e.g. {max(1, segment_length // config.hop_length) * config.hop_length}"
        )
    counts = segments_per_clip(clips, audio_column, segment_length, config.sampling_rate, max_unreadable_fraction)
    segments = SpeechSegments(
        clips, audio_column, speaker_ids, speaker_to_vqvae, segment_length, config.sampling_rate, counts
    )
    if len(segments) == 0:
        raise ValueError("no readable audio clip to encode")
    vqvae = vqvae.to(accelerator.device).eval()
    features = codes_features(config.code_layout.prior_num_embeddings, speaker_label_feature(config) if speaker_to_vqvae else None)
    return encode_in_processes(
        segments, collate_speech, lambda batch: config.code_layout.to_prior_grid(vqvae.encode(batch["input_values"]).indices)[:, None, :],
        "speaker_ids" if speaker_to_vqvae is not None else None, accelerator, features=features, items="segments",
        batch_size=batch_size, num_workers=num_workers, description=description,
    )


def encode_speech_dataset(
    args: SpeechDataArguments, vqvae: AudioVQVAEModel, accelerator: Accelerator, *, batch_size: int, seed: int = 0
) -> tuple[DatasetDict, str]:
    """The training and validation splits of the speech data set `args` describe as the codes of their
    --segment_length segments (`encode_speech`; validation: the first --max_validation_samples clips), and the data
    set's name. The speakers of --speaker_column (the default set's `speaker`) become the `label` column when the
    audio VQ-VAE is conditioned on speakers."""
    if args.streaming:
        raise ValueError("encoding a streamed data set is not supported; drop --streaming")
    with accelerator.main_process_first():
        speech = load_speech_datasets(args, seed=seed)
    speaker_to_vqvae = speakers_of_vqvae(vqvae.config, speech.speaker_names)
    speaker_ids = speaker_ids_for(speech) if speaker_to_vqvae is not None else None
    clips = {
        "train": speech.train,
        "validation": speech.validation.select(range(min(args.max_validation_samples, len(speech.validation)))),
    }
    splits = {
        name: encode_speech(
            vqvae, clips[name], speech.audio_column, speaker_ids, speaker_to_vqvae, accelerator,
            segment_length=args.segment_length, batch_size=batch_size, num_workers=args.dataloader_num_workers,
            max_unreadable_fraction=args.max_unreadable_fraction, description=f"encoding {name}",
        )
        for name in ("train", "validation")
    }
    return DatasetDict(splits), speech.name


# ---------------------------------------------------------------------------------------------
# Checking, loading, saving, pushing


def check_codes(codes: DatasetDict, num_embeddings: int, grid: tuple[int, int], *, per_frame: bool = False) -> None:
    """Raise a `ValueError` naming the split when its codes are not (h, w) grids of values in [0, K); with
    `per_frame` each row holds a sequence of grids (the codes of a trajectory's frames)."""
    for name, split in codes.items():
        if CODES_COLUMN not in split.column_names:
            raise ValueError(f"the {name!r} split has no {CODES_COLUMN!r} column; its columns are {split.column_names}")
        if len(split) == 0:
            continue
        rows = split.data.column(CODES_COLUMN)
        if per_frame:
            rows = pc.list_flatten(rows)
        values = pc.list_flatten(rows)
        height_ok = pc.all(pc.equal(pc.list_value_length(rows), grid[0])).as_py()
        width_ok = pc.all(pc.equal(pc.list_value_length(values), grid[1])).as_py()
        if not (height_ok and width_ok):
            raise ValueError(f"the codes of the {name!r} split are not all {grid[0]}x{grid[1]} grids, the VQ-VAE's grid")
        bounds = pc.min_max(pc.list_flatten(values)).as_py()
        if bounds["min"] < 0 or bounds["max"] >= num_embeddings:
            raise ValueError(
                f"the codes of the {name!r} split lie in [{bounds['min']}, {bounds['max']}], outside [0, {num_embeddings}) "
                f"for the VQ-VAE's codebook of K={num_embeddings}; were they encoded with another VQ-VAE?"
            )


def load_codes(dataset: str, cache_dir: str | None = None) -> tuple[DatasetDict, CodesInfo | None]:
    """A codes data set from a `save_to_disk` folder or the Hub, with its `CodesInfo` if it has one."""
    return load_named_dataset(dataset, cache_dir=cache_dir), CodesInfo.load(dataset, cache_dir=cache_dir)


def save_codes(codes: DatasetDict, info: CodesInfo, folder: str | Path) -> None:
    codes.save_to_disk(str(folder))
    (Path(folder) / CODES_INFO_FILE).write_text(info.to_json())


def push_codes(codes: DatasetDict, info: CodesInfo, repo_id: str, *, token: str | None = None, private: bool | None = None):
    """Upload the splits as Parquet (`DatasetDict.push_to_hub`), then `codes_info.json` beside them."""
    commit = codes.push_to_hub(
        repo_id, token=token, private=private, commit_message=f"Codes of {info.image_dataset} by the VQ-VAE {info.vqvae}"
    )
    HfApi(token=token).upload_file(
        path_or_fileobj=info.to_json().encode(),
        path_in_repo=CODES_INFO_FILE,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=f"Add {CODES_INFO_FILE}",
    )
    return commit


# ---------------------------------------------------------------------------------------------
# scripts/extract_codes.py


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


@dataclass
class ExtractCodesArguments:
    """What `extract_codes` needs: the image data (encoded at the VQ-VAE's resolution) and the codes' settings."""

    data: ImageDataArguments = field(default_factory=lambda: ImageDataArguments(resolution=None))
    codes: CodesArguments = field(default_factory=CodesArguments)


def parse_extract_args(argv: list[str] | None = None) -> ExtractCodesArguments:
    """The settings of `scripts/extract_codes.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        ExtractCodesArguments, argv, description="Encode an image data set into a data set of VQ-VAE code grids."
    )


def at_vqvae_resolution(args: ImageDataArguments, config: VQVAEConfig) -> ImageDataArguments:
    """`args` at the VQ-VAE's image size; a different --resolution is an error."""
    if args.resolution is not None and args.resolution != config.sample_size:
        raise ValueError(
            f"--resolution {args.resolution} differs from the VQ-VAE's sample_size {config.sample_size}; "
            "images are encoded at the VQ-VAE's resolution, so leave --resolution out"
        )
    return dataclasses.replace(args, resolution=config.sample_size)


def extract_codes(arguments: ExtractCodesArguments) -> DatasetDict:
    """Encode the image data set `arguments.data` names with the VQ-VAE `--vqvae`, save it to
    `--output_dir` (main process) and push it when asked; returns the codes on every process."""
    options = arguments.codes
    if options.vqvae is None:
        raise ValueError("pass --vqvae, the trained VQ-VAE that encodes the images (a folder or a Hub id)")
    accelerator = create_accelerator()
    vqvae, processor = load_vqvae(options.vqvae, cache_dir=arguments.data.cache_dir)
    codes, image_dataset = encode_image_dataset(
        arguments.data, vqvae, processor, accelerator, batch_size=options.batch_size, seed=options.seed
    )
    publish_codes(codes, vqvae.config, options.vqvae, image_dataset, options, accelerator)
    end_training(accelerator)
    return codes


@dataclass
class ExtractSpeechCodesArguments:
    """What `extract_speech_codes` needs: the speech data (cut into --segment_length segments, each one row of
    codes) and the codes' settings (--vqvae: a trained `AudioVQVAEModel`)."""

    data: SpeechDataArguments = field(default_factory=SpeechDataArguments)
    codes: CodesArguments = field(default_factory=lambda: CodesArguments(output_dir="outputs/speech-codes"))


def parse_extract_speech_args(argv: list[str] | None = None) -> ExtractSpeechCodesArguments:
    """The settings of `scripts/extract_speech_codes.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        ExtractSpeechCodesArguments, argv,
        description="Encode the speech of an audio data set, cut into fixed-length segments, into one-row grids of "
        "audio VQ-VAE codes.",
    )


def extract_speech_codes(arguments: ExtractSpeechCodesArguments) -> DatasetDict:
    """Encode the segments of the speech data set `arguments.data` names with the audio VQ-VAE `--vqvae`, save the
    codes ((1, segment_length / hop_length) grids, speakers as `label`) to `--output_dir` (main process) and push
    them when asked; returns them on every process."""
    options = arguments.codes
    if options.vqvae is None:
        raise ValueError("pass --vqvae, the trained audio VQ-VAE that encodes the speech (a folder or a Hub id)")
    cache_dir = arguments.data.cache_dir
    if not is_audio_vqvae(options.vqvae, cache_dir=cache_dir):
        raise ValueError(
            f"--vqvae {options.vqvae!r} is not an audio VQ-VAE (AudioVQVAEModel); encode images with "
            "scripts/extract_codes.py"
        )
    accelerator = create_accelerator()
    vqvae, _ = load_audio_vqvae(options.vqvae, cache_dir=cache_dir)
    codes, speech_dataset = encode_speech_dataset(
        arguments.data, vqvae, accelerator, batch_size=options.batch_size, seed=options.seed
    )
    sequence_length = arguments.data.segment_length // vqvae.config.hop_length
    publish_codes(codes, vqvae.config, options.vqvae, speech_dataset, options, accelerator, sequence_length)
    end_training(accelerator)
    return codes


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
