"""The default image data set: crops of the natural photographs bundled with scikit-image, so that training needs no
network."""

import os

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image


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
