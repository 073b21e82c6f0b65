"""Images <-> `pixel_values` in [-1, 1] for the VQ-VAE, saved and loaded with the model."""

import numpy as np
import PIL.Image
import torch
from transformers import ImageProcessingMixin  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling


OUTPUT_TYPES = ("pil", "np", "pt")

# PIL modes of 16-bit images (16-bit grayscale PNGs open as "I;16", or as 32-bit "I" in older Pillow); PIL's
# own conversion to "L" or "RGB" clips them at 255 instead of scaling.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class VQVAEImageProcessor(PilBackend):
    """Resize the shorter side to `size["shortest_edge"]`, center-crop to `crop_size`, scale to
    [-1, 1] (rescale by 1/255, normalise with mean = std = 0.5); `postprocess` goes back.

    Grayscale and RGBA images are converted to RGB (`do_convert_rgb`). A single-channel model
    uses `image_mean=[0.5], image_std=[0.5]`, and images are converted to grayscale instead.
    16-bit images (PIL modes "I;16" and "I", uint16 arrays) are scaled by their bit depth to 8 bits first.

    Example:

    ```python
    >>> import numpy as np
    >>> from hf_vqvae import VQVAEImageProcessor
    >>> processor = VQVAEImageProcessor(resolution=32)
    >>> batch = processor([np.zeros((48, 64, 3), dtype=np.uint8)], return_tensors="pt")
    >>> batch["pixel_values"].shape, float(batch["pixel_values"].min())
    (torch.Size([1, 3, 32, 32]), -1.0)

    ```
    """

    resample = PILImageResampling.BICUBIC
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    size = {"shortest_edge": 32}
    crop_size = {"height": 32, "width": 32}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, resolution: int | None = None, num_channels: int | None = None, **kwargs):
        if resolution is not None:
            kwargs.setdefault("size", {"shortest_edge": resolution})
            kwargs.setdefault("crop_size", {"height": resolution, "width": resolution})
        if num_channels is not None:
            if num_channels not in (1, 3):
                raise ValueError(f"VQVAEImageProcessor supports 1 (grayscale) or 3 (RGB) channels, got {num_channels}")
            kwargs.setdefault("image_mean", [0.5] * num_channels)
            kwargs.setdefault("image_std", [0.5] * num_channels)
        super().__init__(**kwargs)

    @classmethod
    def for_vqvae(cls, config) -> "VQVAEImageProcessor":
        """The processor matching a `VQVAEConfig`: its `sample_size` and `in_channels`."""
        return cls(resolution=config.sample_size, num_channels=config.in_channels)

    @property
    def num_channels(self) -> int:
        return len(self.image_mean)

    def process_image(self, image, *args, **kwargs):
        image = to_8_bit(image)
        if self.num_channels == 1:
            image = to_pil_image(image).convert("L")
            kwargs["do_convert_rgb"] = False
        elif isinstance(image, PIL.Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        return super().process_image(image, *args, **kwargs)

    def postprocess(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        """(B, C, H, W) values in [-1, 1] -> list of PIL images, a (B, H, W, C) float array in
        [0, 1] ("np"), or a (B, C, H, W) tensor in [0, 1] ("pt"), as diffusers pipelines return."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        images = (pixel_values.detach().float().cpu() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        as_uint8 = (array * 255).round().astype(np.uint8)
        if as_uint8.shape[-1] == 1:
            return [PIL.Image.fromarray(image[..., 0], mode="L") for image in as_uint8]
        return [PIL.Image.fromarray(image) for image in as_uint8]


def to_8_bit(image):
    """A 16-bit image (PIL mode "I;16"/"I", or a uint16 array or tensor) scaled by its bit depth to 8 bits
    (65535 -> 255); anything else unchanged."""
    if isinstance(image, PIL.Image.Image):
        if image.mode not in SIXTEEN_BIT_MODES:
            return image
        array = np.asarray(image)
    elif isinstance(image, torch.Tensor) and image.dtype == torch.uint16:
        array = image.numpy()
    elif isinstance(image, np.ndarray) and image.dtype == np.uint16:
        array = image
    else:
        return image
    # A 32-bit "I" image holds 16-bit samples when it comes from a 16-bit file; larger values cannot be scaled.
    if array.min() < 0 or array.max() > 65535:
        raise ValueError(
            f"cannot scale a {array.dtype} image with values in [{array.min()}, {array.max()}] to 8 bits: expected "
            "16-bit samples in [0, 65535]"
        )
    scaled = (array.astype(np.float64) * (255 / 65535)).round().astype(np.uint8)
    return PIL.Image.fromarray(scaled) if isinstance(image, PIL.Image.Image) else scaled


def to_pil_image(image) -> PIL.Image.Image:
    """A PIL image from a PIL image, an (H, W[, C]) uint8 array or a (C, H, W) uint8 tensor."""
    if isinstance(image, PIL.Image.Image):
        return image
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return PIL.Image.fromarray(array)
