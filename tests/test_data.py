import logging

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import HfArgumentParser
from datasets import ClassLabel, Dataset, Features, Image, load_dataset

from hf_vqvae import VQVAEImageProcessor
from hf_vqvae.data.examples import EpochShuffleSampler, TooManyUnreadableImagesError, collate_examples
from hf_vqvae.data.images import (
    ImageDataArguments,
    ImageTransform,
    StreamingTrainingImages,
    TrainingImages,
    UnreadableImageError,
    check_columns,
    decode_image,
    drop_unreadable_images,
    load_image_datasets,
    validation_pixel_values,
)
from hf_vqvae.data.skimage_photos import DEFAULT_PHOTOS, load_default_dataset


def data_args(*argv: str) -> ImageDataArguments:
    (data,) = HfArgumentParser(ImageDataArguments).parse_args_into_dataclasses(args=list(argv))
    return data


def write_image_folder(root, count_per_class: int = 6, size=(24, 20), corrupt: int = 0) -> None:
    """Two class subfolders of small photos in mixed modes (RGB, grayscale, RGBA), plus `corrupt`
    files that claim to be PNGs but hold garbage."""
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA"]
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for index in range(count_per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
            PIL.Image.fromarray(pixels, "RGBA").convert(modes[index % 3]).save(root / label / f"{index}.png")
    for index in range(corrupt):
        (root / "cats" / f"broken-{index}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def test_default_dataset_is_crops_of_the_bundled_photographs():
    splits = load_default_dataset(crop_size=32, validation_fraction=0.1, seed=0)
    assert set(splits) == {"train", "validation"}
    train, validation = splits["train"], splits["validation"]
    assert isinstance(train.features["image"], Image)
    assert isinstance(train.features["label"], ClassLabel)
    assert train.features["label"].names == list(DEFAULT_PHOTOS)
    assert len(train) > 3000 and 0.08 < len(validation) / (len(train) + len(validation)) < 0.12
    # Stratified: every photograph appears in both splits.
    assert set(train["label"]) == set(validation["label"]) == set(range(len(DEFAULT_PHOTOS)))
    crop = train[0]["image"]
    assert crop.size == (32, 32)
    # Crops do not overlap, so a validation crop's pixels never occur in training.
    train_bytes = {np.asarray(image).tobytes() for image in train["image"]}
    assert not any(np.asarray(image).tobytes() in train_bytes for image in validation["image"])


def test_load_image_datasets_uses_the_default_validation_split():
    datasets = load_image_datasets(data_args("--resolution", "64"))
    assert datasets.name == "scikit-image photographs"
    assert len(datasets.validation) > 0
    assert decode_image(datasets.train[0]["image"]).size == (64, 64)


def test_missing_image_column_lists_the_columns(tmp_path):
    write_image_folder(tmp_path / "images")
    with pytest.raises(ValueError, match=r"--image_column 'img' is not a column.*\['image', 'label'\]"):
        load_image_datasets(data_args("--train_data_dir", str(tmp_path / "images"), "--image_column", "img", "--cache_dir", str(tmp_path / "cache")))
    with pytest.raises(ValueError, match=r"--label_column 'class'"):
        check_columns(Dataset.from_dict({"image": [1]}), "image", "class")


def test_image_folder_with_held_out_fraction(tmp_path):
    write_image_folder(tmp_path / "images", count_per_class=10)
    args = data_args(
        "--train_data_dir", str(tmp_path / "images"), "--validation_fraction", "0.2", "--cache_dir", str(tmp_path / "cache")
    )
    datasets = load_image_datasets(args)
    assert (len(datasets.train), len(datasets.validation)) == (16, 4)
    assert datasets.train.features["label"].names == ["cats", "dogs"]


def test_corrupt_images_are_skipped_with_a_count_and_too_many_stop_the_run(tmp_path, caplog):
    write_image_folder(tmp_path / "images", count_per_class=10, corrupt=1)
    train = load_dataset("imagefolder", data_dir=str(tmp_path / "images"), cache_dir=str(tmp_path / "cache"), split="train")
    train = train.cast_column("image", Image(decode=False))
    with caplog.at_level(logging.WARNING, logger="hf_vqvae"):
        kept = drop_unreadable_images(train, "image", max_fraction=0.1)
    assert len(kept) == len(train) - 1
    assert "skipped 1 unreadable images of" in caplog.text and "broken-0.png" in caplog.text
    with pytest.raises(TooManyUnreadableImagesError, match=r"1 of \d+ images could not be decoded.*--max_unreadable_fraction"):
        drop_unreadable_images(train, "image", max_fraction=0.01)


def test_decode_image_names_the_problem():
    with pytest.raises(UnreadableImageError, match="cannot decode image 'bad.png'"):
        decode_image({"bytes": b"not an image", "path": "bad.png"})


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB"])
def test_transform_converts_modes_and_crops_to_the_resolution(mode):
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert(mode)
    transform = ImageTransform(VQVAEImageProcessor(resolution=16), center_crop=False, random_flip=True)
    pixel_values = transform(image, np.random.default_rng(1))
    assert pixel_values.shape == (3, 16, 16)
    assert -1 <= float(pixel_values.min()) and float(pixel_values.max()) <= 1
    gray = ImageTransform(VQVAEImageProcessor(resolution=16, num_channels=1))(image)
    assert gray.shape == (1, 16, 16)


def test_augmentations_are_a_function_of_seed_epoch_and_index():
    images = [PIL.Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)) for i in range(4)]
    dataset = Dataset.from_dict({"image": images}, features=Features({"image": Image(decode=False)}))
    transform = ImageTransform(VQVAEImageProcessor(resolution=16), center_crop=False, random_flip=True)
    first, second = TrainingImages(dataset, "image", transform, seed=0), TrainingImages(dataset, "image", transform, seed=0)
    assert torch.equal(first[2]["pixel_values"], second[2]["pixel_values"])
    second.set_epoch(1)
    assert any(not torch.equal(first[i]["pixel_values"], second[i]["pixel_values"]) for i in range(4))

    sampler = EpochShuffleSampler(100, seed=0)
    epoch_zero = list(sampler)
    assert epoch_zero == list(EpochShuffleSampler(100, seed=0)) and sorted(epoch_zero) == list(range(100))
    sampler.set_epoch(1)
    assert list(sampler) != epoch_zero


def test_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    images = [PIL.Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)) for i in range(8)]
    dataset = Dataset.from_dict({"image": images, "label": [i % 2 for i in range(8)]}, features=Features({"image": Image(decode=False), "label": ClassLabel(names=["a", "b"])}))
    transform = ImageTransform(VQVAEImageProcessor(resolution=16), center_crop=False, random_flip=True)

    def batches(num_workers):
        examples = TrainingImages(dataset, "image", transform, seed=3, label_column="label")
        loader = torch.utils.data.DataLoader(
            examples, batch_size=4, sampler=EpochShuffleSampler(8, 3), collate_fn=collate_examples, num_workers=num_workers
        )
        return list(loader)

    for serial, parallel in zip(batches(0), batches(2)):
        assert torch.equal(serial["pixel_values"], parallel["pixel_values"])
        assert torch.equal(serial["labels"], parallel["labels"])


def test_streaming_skips_unreadable_images_and_stops_when_too_many_fail():
    good = PIL.Image.new("RGB", (16, 16), "red")
    values = [good] * 3 + [{"bytes": b"broken", "path": None}]
    stream = Dataset.from_dict({"image": values[:3]}).to_iterable_dataset()
    transform = ImageTransform(VQVAEImageProcessor(resolution=16))
    assert len(list(StreamingTrainingImages(stream, "image", transform, seed=0))) == 3

    rows = [{"image": {"bytes": b"broken", "path": None}}] * 2 + [{"image": {"bytes": _png_bytes(good), "path": None}}] * 2
    broken_stream = Dataset.from_list(rows).to_iterable_dataset()
    with pytest.raises(TooManyUnreadableImagesError, match="2 of 4 images"):
        list(StreamingTrainingImages(broken_stream, "image", transform, seed=0, max_unreadable_fraction=0.1))
    assert len(list(StreamingTrainingImages(broken_stream, "image", transform, seed=0, max_unreadable_fraction=0.5))) == 2


def test_validation_pixel_values_are_center_crops():
    rows = [{"image": {"bytes": _png_bytes(PIL.Image.new("RGB", (20, 16), "blue")), "path": None}}] * 5
    augmenting = ImageTransform(VQVAEImageProcessor(resolution=16), center_crop=False, random_flip=True)
    pixel_values = validation_pixel_values(rows, "image", augmenting, max_samples=3)
    assert pixel_values.shape == (3, 3, 16, 16)


def _png_bytes(image: PIL.Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
