"""The code grids a model over codes trains on (the PixelCNN prior, the second stage of a hierarchy), shared by their
recipes: a codes data set written by `scripts/extract_codes.py` (`--codes_dataset`) or images encoded once at the start
(`--vqvae` with the image data flags), checked against the VQ-VAE that decodes them; and their batches."""

import dataclasses
import functools

import numpy as np
import torch
from accelerate import Accelerator
from datasets import Dataset, DatasetDict

from ..data.codes import CODES_COLUMN, LABEL_COLUMN, CodesInfo, check_codes, check_label_feature, class_label_column, load_codes
from ..data.encoding import encode_image_dataset
from ..data.examples import EpochShuffleSampler
from ..data.images import ImageDataArguments, check_columns
from ..data.splits import training_and_validation_splits
from ..models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..models.auto import is_audio_vqvae, load_audio_vqvae, load_vqvae
from ..models.hierarchical_vqvae.modeling_hierarchical_vqvae import HierarchicalVQVAEModel
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from ..pipelines.pipeline_audio_vqvae import AudioVQVAEPipeline
from ..pipelines.pipeline_hierarchical_vqvae import HierarchicalVQVAEPipeline
from ..pipelines.pipeline_utils import Prior
from ..pipelines.pipeline_vqvae import VQVAEPipeline


@dataclasses.dataclass
class TrainingCodes:
    """The code grids a run trains and validates on, and the VQ-VAE that decodes them (through the
    stage-2 model, for stage-2 codes)."""

    train: Dataset
    validation: Dataset
    label_column: str | None
    vqvae: VQVAEModel
    processor: VQVAEImageProcessor
    dataset_name: str  # the encoded images' data set, for the model card
    stage2: HierarchicalVQVAEModel | None = None

    @property
    def code_grid(self) -> tuple[int, int, int]:
        """(K, grid height, grid width) of the codes."""
        if self.stage2 is not None:
            return self.stage2.config.prior_code_grid(*self.stage2.config.latent_grid)
        return self.vqvae.config.prior_code_grid(self.vqvae.config.latent_size, self.vqvae.config.latent_size)

    def pipeline(self, prior: Prior) -> VQVAEPipeline | HierarchicalVQVAEPipeline | AudioVQVAEPipeline:
        """The generator a prior over these codes completes."""
        return generator_pipeline(prior, self.vqvae, self.processor, self.stage2)


@dataclasses.dataclass
class SpeechTrainingCodes(TrainingCodes):
    """Speech codes: one-row grids of `sequence_length` codes of an audio VQ-VAE (`vqvae`, with its feature extractor
    as `processor`), generated as speech by its WaveNet decoder."""

    vqvae: AudioVQVAEModel
    processor: AudioVQVAEFeatureExtractor
    sequence_length: int = 0

    @property
    def code_grid(self) -> tuple[int, int, int]:
        return (self.vqvae.config.code_layout.prior_num_embeddings, 1, self.sequence_length)


def load_codes_decoder(
    codes_dataset: str, vqvae: str | None, info: CodesInfo | None, cache_dir: str | None = None
) -> tuple[VQVAEModel | AudioVQVAEModel, VQVAEImageProcessor | AudioVQVAEFeatureExtractor, HierarchicalVQVAEModel | None]:
    """What decodes the codes of `codes_dataset` (whose `codes_info.json` is `info`): the VQ-VAE `vqvae`, else the one
    the info names, with its processor, and for stage-2 codes the stage-2 model under it; checked against the codes."""
    vqvae_name = vqvae or (info.vqvae if info is not None else None)
    if vqvae_name is None:
        raise ValueError(f"the codes data set {codes_dataset!r} names no VQ-VAE (it has no codes_info.json): pass --vqvae")
    stage2 = None
    if info is not None and info.stage1_vqvae is not None:
        # Stage-2 codes: `info.vqvae` is the stage-2 model, `--vqvae` (if given) the stage-1 VQ-VAE.
        stage2 = HierarchicalVQVAEModel.from_pretrained(info.vqvae, cache_dir=cache_dir).eval()
        vqvae_name = vqvae or info.stage1_vqvae
    speech = is_audio_vqvae(vqvae_name, cache_dir=cache_dir)
    model, processor = (load_audio_vqvae if speech else load_vqvae)(vqvae_name, cache_dir=cache_dir)
    if stage2 is not None:
        stage2.check_compatible_with_vqvae(*model.config.prior_code_grid(model.config.latent_size, model.config.latent_size))
    elif info is not None:
        info.check_vqvae(model.config, vqvae_name)
    return model, processor, stage2


def generator_pipeline(
    prior: Prior, vqvae, processor, stage2: HierarchicalVQVAEModel | None = None
) -> VQVAEPipeline | HierarchicalVQVAEPipeline | AudioVQVAEPipeline:
    """The generator a prior completes over the codes of `vqvae` (through `stage2` for stage-2 codes)."""
    if isinstance(vqvae, AudioVQVAEModel):
        return AudioVQVAEPipeline(vqvae=vqvae, prior=prior, feature_extractor=processor)
    if stage2 is not None:
        return HierarchicalVQVAEPipeline(vqvae=vqvae, stage2=stage2, prior=prior, image_processor=processor)
    return VQVAEPipeline(vqvae=vqvae, prior=prior, image_processor=processor)


def load_training_codes(
    source, data: ImageDataArguments, accelerator: Accelerator, *, batch_size: int, seed: int
) -> TrainingCodes:
    """The codes of --codes_dataset, or of the images of the data flags encoded with --vqvae; checked
    against the VQ-VAE (K, grid, code range) and the class labels against their classes. `source` is the recipe's
    group of codes flags: `codes_dataset`, `vqvae`, and `unconditional` (ignore class labels)."""
    if source.codes_dataset:
        with accelerator.main_process_first():
            splits, info = load_codes(source.codes_dataset, cache_dir=data.cache_dir)
        vqvae, processor, stage2 = load_codes_decoder(source.codes_dataset, source.vqvae, info, cache_dir=data.cache_dir)
        speech = isinstance(vqvae, AudioVQVAEModel)
        dataset_name = info.image_dataset if info is not None else source.codes_dataset
        train, validation = training_and_validation_splits(splits, data, source.codes_dataset, seed)
        label_column = class_label_column(train, data.label_column)
    else:
        stage2 = None
        if not source.vqvae:
            raise ValueError(
                "pass --codes_dataset (codes written by scripts/extract_codes.py) or --vqvae (to encode the images of "
                "the data flags)"
            )
        if is_audio_vqvae(source.vqvae, cache_dir=data.cache_dir):
            raise ValueError(
                f"--vqvae {source.vqvae!r} is an audio VQ-VAE: extract the codes of its speech first with "
                "scripts/extract_speech_codes.py and pass them as --codes_dataset"
            )
        speech = False
        vqvae, processor = load_vqvae(source.vqvae, cache_dir=data.cache_dir)
        codes, dataset_name = encode_image_dataset(data, vqvae, processor, accelerator, batch_size=batch_size, seed=seed)
        train, validation = codes["train"], codes["validation"]
        label_column = LABEL_COLUMN if LABEL_COLUMN in train.column_names else None

    validation = validation.select(range(min(data.max_validation_samples, len(validation))))
    if speech:
        codes = SpeechTrainingCodes(
            train, validation, label_column, vqvae, processor, dataset_name, sequence_length=sequence_length_of(train, info)
        )
    else:
        codes = TrainingCodes(train, validation, label_column, vqvae, processor, dataset_name, stage2)
    num_embeddings, *grid = codes.code_grid
    check_codes(DatasetDict(train=train, validation=validation), num_embeddings, tuple(grid))
    # The hierarchical pipeline samples unconditionally.
    if source.unconditional or stage2 is not None:
        label_column = None
    if label_column is not None:
        for split in (train, validation):
            check_columns(split, CODES_COLUMN, label_column)
            check_label_feature(split, label_column)
    return dataclasses.replace(codes, label_column=label_column)


def sequence_length_of(codes: Dataset, info) -> int:
    """The codes per one-row grid of speech codes: as their `codes_info.json` says, else as the first grid has."""
    if info is not None:
        return info.grid_width
    first = codes[0][CODES_COLUMN] if len(codes) else None
    if not first:
        raise ValueError("the speech codes have no codes_info.json and their first training grid is missing or empty")
    return len(first[0])


def collate_codes(examples: list[dict], label_column: str | None) -> dict:
    batch = {"input_ids": torch.from_numpy(np.stack([example[CODES_COLUMN] for example in examples])).long()}
    if label_column is not None:
        batch["class_labels"] = torch.tensor([int(example[label_column]) for example in examples])
    return batch


def codes_dataloader(codes: Dataset, label_column: str | None, *, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0):
    """Batches of `input_ids` (and `class_labels`); a training loader reshuffles each epoch from
    (seed, epoch), so a resumed run meets the same batches."""
    columns = [CODES_COLUMN] + ([label_column] if label_column else [])
    return torch.utils.data.DataLoader(
        codes.with_format("numpy", columns=columns),
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(codes), seed) if shuffle else None,
        collate_fn=functools.partial(collate_codes, label_column=label_column),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
