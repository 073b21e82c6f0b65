"""Writing codes data sets (schema in `codes`): the images of a data set, the segments of speech clips and the stage-1
code grids of a hierarchy, each encoded by its model.

Under several processes (`accelerate launch`) each process encodes its share of the batches and every process
receives all the codes in the data set's order (`encode_in_processes`); the main process writes them.
"""

import dataclasses

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from datasets import ClassLabel, Dataset, DatasetDict, Features
from tqdm.auto import tqdm

from ..models.audio_vqvae.configuration_audio_vqvae import AudioVQVAEConfig
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..models.vqvae.configuration_vqvae import VQVAEConfig
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from .audio_files import UnreadableAudioError, decode_audio, decode_for_model
from .codes import CODES_COLUMN, LABEL_COLUMN, check_label_feature, class_label_column, codes_features
from .examples import collate_examples
from .images import ImageDataArguments, ImageTransform, TrainingImages, check_columns, drop_unreadable_images, load_image_datasets
from .speech import SpeakerIds, SpeechDataArguments, audio_counter, load_speech_datasets, speaker_ids_for, speech_example


# ---------------------------------------------------------------------------------------------
# Images


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


def at_vqvae_resolution(args: ImageDataArguments, config: VQVAEConfig) -> ImageDataArguments:
    """`args` at the VQ-VAE's image size; a different --resolution is an error."""
    if args.resolution is not None and args.resolution != config.sample_size:
        raise ValueError(
            f"--resolution {args.resolution} differs from the VQ-VAE's sample_size {config.sample_size}; "
            "images are encoded at the VQ-VAE's resolution, so leave --resolution out"
        )
    return dataclasses.replace(args, resolution=config.sample_size)


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
# Stage-1 codes, encoded by the second stage of a hierarchy


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
    Successive segments of a clip decode it once, scaled to `loudness_target_db` (None: as recorded)."""

    def __init__(
        self, clips: Dataset, audio_column: str, speaker_ids: SpeakerIds | None, speaker_to_vqvae: list[int] | None,
        segment_length: int, sampling_rate: int, counts: list[int], loudness_target_db: float | None = None,
    ):
        self.clips = clips
        self.audio_column = audio_column
        self.speaker_ids = speaker_ids
        self.speaker_to_vqvae = speaker_to_vqvae
        self.segment_length = segment_length
        self.sampling_rate = sampling_rate
        self.segments = [(clip, segment) for clip, count in enumerate(counts) for segment in range(count)]
        self.loudness_target_db = loudness_target_db
        self._decoded_clip = None

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> dict:
        clip, segment = self.segments[int(index)]
        if self._decoded_clip is None or self._decoded_clip[0] != clip:
            row = self.clips[clip]
            speaker = self.speaker_ids(row) if self.speaker_ids is not None else None
            speaker = self.speaker_to_vqvae[speaker] if speaker is not None else None
            waveform = decode_for_model(row[self.audio_column], self.sampling_rate, self.loudness_target_db)
            self._decoded_clip = (clip, waveform, speaker)
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
        clips, audio_column, speaker_ids, speaker_to_vqvae, segment_length, config.sampling_rate, counts,
        config.loudness_target_db if config.normalize_loudness else None,
    )
    if len(segments) == 0:
        raise ValueError("no readable audio clip to encode")
    vqvae = vqvae.to(accelerator.device).eval()
    layout = config.code_layout
    features = codes_features(layout.prior_num_embeddings, speaker_label_feature(config) if speaker_to_vqvae else None)
    return encode_in_processes(
        segments, collate_examples, lambda batch: layout.to_prior_grid(vqvae.encode(batch["input_values"]).indices)[:, None, :],
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
