"""What the demo's image tabs compute: an image's reconstruction beside it, its code map, what its codes cost in bits
and the PSNR of the reconstruction (a `VQVAEPipeline`); a row of samples, by class, seed and temperature (a
`VQVAEPipeline` or a `HierarchicalVQVAEPipeline`)."""

import colorsys
import inspect
import math
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import make_image_grid

from ...pipelines.pipeline_vqvae import image_processor_of


# Small images are shown enlarged (nearest neighbour, so each pixel and each code stays a sharp square).
MIN_SHOWN_SIDE = 256

# Hues of the code map: consecutive code ids a golden-ratio turn apart on the colour wheel, so neighbours differ.
GOLDEN_RATIO_TURN = 0.6180339887


@dataclass
class Reconstruction:
    """An image through the VQ-VAE: `pair` (the input as the model sees it, beside its reconstruction), `code_map`
    (one colour per code id), `codes` (h, w), the reconstruction's `psnr` (dB, pixels in [0, 1]), `code_bits` (what
    the code grid costs) and `pixel_bits` (what the input's 8-bit pixels cost)."""

    pair: PIL.Image.Image
    code_map: PIL.Image.Image
    codes: torch.LongTensor
    psnr: float
    code_bits: float
    pixel_bits: int

    def summary(self, num_embeddings: int) -> str:
        height, width = self.codes.shape
        return (
            f"{height}x{width} codes from a codebook of {num_embeddings}: {height * width} x "
            f"{math.log2(num_embeddings):.3g} bits = {self.code_bits:,.0f} bits, against {self.pixel_bits:,} bits of "
            f"8-bit pixels ({self.pixel_bits / self.code_bits:.1f}x fewer). PSNR of the reconstruction: "
            f"{self.psnr:.2f} dB."
        )


def enlarged(image: PIL.Image.Image, min_side: int = MIN_SHOWN_SIDE) -> PIL.Image.Image:
    """`image` scaled by a whole factor until its shorter side is at least `min_side`."""
    scale = max(1, math.ceil(min_side / min(image.size)))
    return image.resize((image.width * scale, image.height * scale), PIL.Image.NEAREST) if scale > 1 else image


def code_map(codes: torch.LongTensor, num_embeddings: int) -> PIL.Image.Image:
    """A (h, w) grid of code ids as an RGB image, one pixel per code, one colour per id."""
    palette = np.array([
        colorsys.hsv_to_rgb((index * GOLDEN_RATIO_TURN) % 1.0, 0.65, 0.95) for index in range(num_embeddings)
    ])
    return PIL.Image.fromarray((palette[codes.cpu().numpy()] * 255).round().astype(np.uint8))


def psnr(reference: torch.Tensor, image: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images with values in [0, 1]."""
    mse = (reference.double() - image.double()).pow(2).mean().clamp(min=1e-10)
    return float(10 * torch.log10(1 / mse))


def reconstruct(pipeline, image: PIL.Image.Image) -> Reconstruction:
    """`image` resized and cropped as the VQ-VAE takes it, encoded and decoded by `pipeline` (a `VQVAEPipeline`)."""
    if image is None:
        raise ValueError("upload an image to reconstruct")
    processor = image_processor_of(pipeline)
    pixel_values = processor([image], return_tensors="pt")["pixel_values"]
    output = pipeline(image=pixel_values, output_type="pt")
    original = ((pixel_values + 1) / 2).clamp(0, 1)
    reconstruction = output.images.float().cpu()
    shown_input, shown_reconstruction = (enlarged(picture) for picture in processor.postprocess(
        torch.cat([original, reconstruction]) * 2 - 1
    ))
    gap = max(4, shown_input.width // 32)
    pair = PIL.Image.new("RGB", (2 * shown_input.width + gap, shown_input.height), "white")
    pair.paste(shown_input.convert("RGB"), (0, 0))
    pair.paste(shown_reconstruction.convert("RGB"), (shown_input.width + gap, 0))
    codes = output.codes[0].cpu()
    num_embeddings = pipeline.vqvae.config.num_embeddings
    codes_image = code_map(codes, num_embeddings).resize(shown_input.size, PIL.Image.NEAREST)
    return Reconstruction(
        pair=pair,
        code_map=codes_image,
        codes=codes,
        psnr=psnr(original, reconstruction),
        code_bits=codes.numel() * math.log2(num_embeddings),
        pixel_bits=8 * original[0].numel(),
    )


def class_names(pipeline) -> list[str]:
    """The classes a pipeline samples by (its call takes `class_labels`), by name where its prior's config names them;
    [] for a pipeline that takes none or a prior conditioned on none."""
    if "class_labels" not in inspect.signature(pipeline.__call__).parameters:
        return []
    config = pipeline.prior.config
    names = config.id2label or {}
    return [str(names.get(index, index)) for index in range(getattr(config, "num_classes", 0) or 0)]


def sample(pipeline, count: int, seed: int, temperature: float, class_name: str | None = None) -> PIL.Image.Image:
    """A row of `count` images drawn by `pipeline` from `seed` at `temperature`, of the class `class_name` (one of
    `class_names(pipeline)`) when its prior takes one."""
    count, seed = int(count), int(seed)
    if count < 1:
        raise ValueError(f"the number of images must be >= 1, got {count}")
    conditioning = {}
    classes = class_names(pipeline)
    if classes:
        if class_name not in classes:
            raise ValueError(f"pick a class: one of {classes}, got {class_name!r}")
        conditioning["class_labels"] = classes.index(class_name)
    generator = torch.Generator(device=pipeline.device).manual_seed(seed)
    images = pipeline(batch_size=count, temperature=float(temperature), generator=generator, **conditioning).images
    return enlarged(make_image_grid(images, rows=1, cols=count), min_side=MIN_SHOWN_SIDE // 2)
