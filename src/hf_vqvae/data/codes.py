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

This module is the schema and its storage (checking, loading, saving, pushing); `encoding` writes the codes.
"""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from huggingface_hub import HfApi, hf_hub_download

from ..models.audio_vqvae.configuration_audio_vqvae import AudioVQVAEConfig
from ..models.vqvae.configuration_vqvae import VQVAEConfig
from .splits import load_named_dataset


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


def codes_features(num_embeddings: int, label_feature=None) -> Features:
    dtype = "int16" if num_embeddings <= 2**15 else "int32"
    features = {CODES_COLUMN: List(List(Value(dtype)))}
    if label_feature is not None:
        features[LABEL_COLUMN] = label_feature
    return Features(features)


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
