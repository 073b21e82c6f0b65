import dataclasses
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_from_disk

from hf_vqvae import VQVAEConfig, VQVAEImageProcessor, VQVAEModel
from hf_vqvae.commands.extract_codes import extract_codes
from hf_vqvae.commands.extract_codes import parse_args as parse_extract_args
from hf_vqvae.data.codes import CODES_INFO_FILE, CodesInfo, check_codes, load_codes
from hf_vqvae.data.images import decode_image, load_image_datasets

from conftest import TINY_VQVAE
from launching import accelerate_launch, run, script


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def extract_flags(vqvae_folder, image_folder, output_dir, *extra: str) -> list[str]:
    """Encode `image_folder` (48 images, 20 % held out) with `vqvae_folder` in batches of 4."""
    return [
        "--vqvae", str(vqvae_folder), "--train_data_dir", str(image_folder), "--output_dir", str(output_dir),
        "--cache_dir", str(output_dir.parent / "datasets-cache"), "--validation_fraction", "0.2", "--batch_size", "4",
        *extra,
    ]


def as_array(split: Dataset) -> np.ndarray:
    return split.with_format("numpy")[:]["codes"]


def test_two_processes_write_the_codes_of_one_process_and_of_encode(tmp_path, image_folder, tiny_vqvae_folder):
    """38 training images in batches of 4 over two processes: the last round of batches is padded
    with repeated images, which must not reach the data set."""
    one, two = tmp_path / "one", tmp_path / "two"
    codes = extract_codes(parse_extract_args(extract_flags(tiny_vqvae_folder, image_folder, one)))
    run([*accelerate_launch(num_processes=2), script("extract_codes.py"), *extract_flags(tiny_vqvae_folder, image_folder, two)])

    written_once, written_twice = load_from_disk(str(one)), load_from_disk(str(two))
    assert {name: len(split) for name, split in written_twice.items()} == {"train": 38, "validation": 10}
    for name in ("train", "validation"):
        assert np.array_equal(as_array(written_twice[name]), as_array(written_once[name]))
        assert written_twice[name]["label"] == written_once[name]["label"]
        assert np.array_equal(as_array(codes[name]), as_array(written_once[name]))

    # The same images through the VQ-VAE's own processor (resize, center crop) and `encode`.
    data = parse_extract_args(extract_flags(tiny_vqvae_folder, image_folder, one)).data
    images = load_image_datasets(dataclasses.replace(data, resolution=16)).train
    pixel_values = VQVAEImageProcessor.from_pretrained(tiny_vqvae_folder)(
        [decode_image(value) for value in images["image"]], return_tensors="pt"
    )["pixel_values"]
    expected = VQVAEModel.from_pretrained(tiny_vqvae_folder).encode(pixel_values).indices
    assert torch.equal(torch.from_numpy(as_array(written_twice["train"])).long(), expected)
    assert written_twice["train"]["label"] == images["label"]


def test_codes_carry_the_class_labels_and_name_the_vqvae(tmp_path, image_folder, tiny_vqvae_folder):
    output_dir = tmp_path / "codes"
    extract_codes(parse_extract_args(extract_flags(tiny_vqvae_folder, image_folder, output_dir)))
    codes, info = load_codes(str(output_dir))
    features = codes["train"].features
    assert features["label"] == ClassLabel(names=["a", "b"])
    assert str(features["codes"]) == "List(List(Value('int16')))"
    assert info == CodesInfo(
        vqvae=str(tiny_vqvae_folder.resolve()), num_embeddings=16, grid_height=4, grid_width=4, image_dataset="images (local folder)"
    )
    assert json.loads((output_dir / CODES_INFO_FILE).read_text())["num_embeddings"] == 16
    assert all(0 <= value < 16 for grid in codes["validation"]["codes"] for row in grid for value in row)


def test_unlabelled_images_give_codes_without_labels(tmp_path, image_folder, tiny_vqvae_folder):
    flat = tmp_path / "flat"
    flat.mkdir()
    for index, path in enumerate(sorted(image_folder.rglob("*.png"))[:12]):
        path.rename(flat / f"{index}.png")
    codes = extract_codes(parse_extract_args(extract_flags(tiny_vqvae_folder, flat, tmp_path / "codes")))
    assert codes["train"].column_names == ["codes"] and len(codes["train"]) + len(codes["validation"]) == 12


def test_push_uploads_the_splits_and_the_codes_info(tmp_path, image_folder, tiny_vqvae_folder, recorded_dataset_uploads):
    output_dir = tmp_path / "codes"
    codes = extract_codes(parse_extract_args(extract_flags(
        tiny_vqvae_folder, image_folder, output_dir, "--push_to_hub", "--hub_dataset_id", "org/tiny-codes", "--hub_token", "hf_test",
    )))
    assert recorded_dataset_uploads["created"] == ["org/tiny-codes"]
    data_commit, info_commit = recorded_dataset_uploads["commits"]
    assert data_commit["repo_id"] == info_commit["repo_id"] == "org/tiny-codes"
    files = data_commit["files"]
    assert {"data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet", "README.md"} <= set(files)
    train = pq.read_table(io.BytesIO(files["data/train-00000-of-00001.parquet"]))
    assert train.column_names == ["codes", "label"]
    assert np.array_equal(np.array(train.column("codes").to_pylist()), as_array(codes["train"]))
    assert "class_label" in files["README.md"].decode() and "'0': a" in files["README.md"].decode()
    assert json.loads(info_commit["files"][CODES_INFO_FILE]) == json.loads((output_dir / CODES_INFO_FILE).read_text())


def test_bad_inputs_name_the_problem(tmp_path, image_folder, tiny_vqvae_folder, tiny_config):
    with pytest.raises(ValueError, match=r"--resolution 32 differs from the VQ-VAE's sample_size 16"):
        extract_codes(parse_extract_args(extract_flags(tiny_vqvae_folder, image_folder, tmp_path / "a", "--resolution", "32")))
    with pytest.raises(ValueError, match=r"--label_column 'class' is not a column.*\['image', 'label'\]"):
        extract_codes(parse_extract_args(extract_flags(tiny_vqvae_folder, image_folder, tmp_path / "b", "--label_column", "class")))

    grids = DatasetDict(train=Dataset.from_dict({"codes": [[[0, 3], [15, 16]]]}))
    with pytest.raises(ValueError, match=r"'train' split lie in \[0, 16\], outside \[0, 16\) .*K=16"):
        check_codes(grids, num_embeddings=16, grid=(2, 2))
    with pytest.raises(ValueError, match=r"not all 4x4 grids"):
        check_codes(grids, num_embeddings=32, grid=(4, 4))

    info = CodesInfo.of_vqvae(tiny_config, "org/vqvae", "images")
    other = VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})
    with pytest.raises(ValueError, match=r"K=16 and 4x4 grids, but the VQ-VAE 'org/other' has K=32 and 4x4 grids"):
        info.check_vqvae(other, "org/other")
