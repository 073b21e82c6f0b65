"""VQVAEPipeline: sample a code grid from the prior (a gated PixelCNN or a transformer), decode it with the VQ-VAE."""

from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from diffusers.utils import BaseOutput, make_image_grid

from .pipeline_cards import pipeline_model_card
from ..models.vqvae.image_processing_vqvae import OUTPUT_TYPES, VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from .pipeline_utils import HubDiffusionPipeline, Prior, batch_size_of, sample_prior


PIPELINE_OUTPUT_TYPES = (*OUTPUT_TYPES, "latent")


def with_row_labels(grid: PIL.Image.Image, labels: list[str]) -> PIL.Image.Image:
    """`grid` (one row of images per label) with each label written at the left of its row."""
    font = PIL.ImageFont.load_default()
    draw = PIL.ImageDraw.Draw(grid)
    width = max(int(draw.textlength(label, font=font)) for label in labels) + 8
    row_height = grid.height / len(labels)
    labelled = PIL.Image.new("RGB", (width + grid.width, grid.height), "white")
    labelled.paste(grid.convert("RGB"), (width, 0))
    draw = PIL.ImageDraw.Draw(labelled)
    for row, label in enumerate(labels):
        draw.text((4, row * row_height + row_height / 2), label, fill="black", font=font, anchor="lm")
    return labelled


@dataclass
class VQVAEPipelineOutput(BaseOutput):
    """
    Args:
        images: a list of PIL images, a (B, H, W, C) array in [0, 1] ("np"), a (B, C, H, W) tensor
            in [0, 1] ("pt"), or the code grids themselves ("latent").
        codes: the code grids, (B, h, w) integers in [0, K) ((B, N, h, w) for residual VQ).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    codes: torch.LongTensor | None = None


class VQVAEPipeline(HubDiffusionPipeline):
    r"""
    Generate images as the paper does: an autoregressive prior samples a grid of codes, the VQ-VAE
    decodes it. With `image=` it reconstructs images instead (encode, then decode).

    Args:
        vqvae ([`VQVAEModel`]): encoder, codebook and decoder.
        prior ([`PixelCNNPriorModel`] or [`TransformerPriorModel`]): a gated PixelCNN or a transformer over
            the VQ-VAE's code grid; its codebook size and grid must match the VQ-VAE's (checked here).
        image_processor ([`VQVAEImageProcessor`], *optional*): turns `image=` inputs into pixel
            values and decoded pixels into PIL / numpy. Without one (None, as diffusers' optional
            components are), one matching the VQ-VAE's resolution and channels is used; None is
            what `save_pretrained` records and `from_pretrained` gives back.

    Load it with `VQVAEPipeline.from_pretrained(folder or Hub id)`. diffusers' generic
    `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads it too, through the custom
    pipeline entry every saved folder carries (`HubDiffusionPipeline`).
    """

    model_cpu_offload_seq = "prior->vqvae"
    push_commit_message = "Upload VQ-VAE pipeline with hf-vqvae"
    _optional_components = ["image_processor"]

    def __init__(
        self, vqvae: VQVAEModel, prior: Prior, image_processor: VQVAEImageProcessor | None = None
    ):
        super().__init__()
        latent_size = vqvae.config.latent_size
        prior.check_compatible_with_vqvae(*vqvae.config.prior_code_grid(latent_size, latent_size))
        self.register_modules(vqvae=vqvae, prior=prior, image_processor=image_processor)

    def model_card(self, repo_id: str, **card_fields):
        """The card `push_to_hub` uploads (`pipeline_cards.pipeline_model_card`: `dataset_name`, `metrics`, `image_path`)."""
        return pipeline_model_card(self.vqvae.config, self.prior.config, repo_id, **card_fields)

    def class_label_ids(self, labels: int | str | list[int | str] | torch.Tensor) -> torch.LongTensor:
        """Class labels as ids; names are looked up in the prior config's `id2label`."""
        if isinstance(labels, torch.Tensor):
            return labels.long().reshape(-1)
        labels = labels if isinstance(labels, (list, tuple)) else [labels]
        label2id = {name: int(index) for index, name in (self.prior.config.id2label or {}).items()}
        ids = []
        for label in labels:
            if isinstance(label, str):
                if label not in label2id:
                    raise ValueError(f"unknown class label {label!r}; the prior knows {sorted(label2id)}")
                label = label2id[label]
            ids.append(int(label))
        return torch.tensor(ids, dtype=torch.long)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int | None = None,
        class_labels: int | str | list[int | str] | torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        image=None,
        guidance_scale: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> VQVAEPipelineOutput | tuple:
        r"""
        Args:
            batch_size (`int`, *optional*): images to generate; defaults to one per class label
                (`class_labels=["dots", "stripes"]` gives two images), or 1. With a single class label,
                that label is used for every image.
            class_labels (*optional*): one class id or name per image (or one for all) for a
                class-conditional prior; must be omitted for an unconditional one.
            temperature (`float`, defaults to 1.0): divides the prior's logits.
            generator (`torch.Generator` or a list of `batch_size` of them, *optional*): makes sampling
                reproducible; with a list, image i is the image a batch of one gives with generator i.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"` (the
                code grids, not decoded).
            return_dict (`bool`, defaults to `True`): return a [`VQVAEPipelineOutput`] or a tuple
                `(images, codes)`.
            image (*optional*): images to reconstruct instead of sampling (PIL images, arrays, or
                pixel values in [-1, 1] as a tensor).
            guidance_scale, top_k, top_p (*optional*): a transformer prior's classifier-free guidance and top-k /
                nucleus cuts (`TransformerPriorModel.sample`); a PixelCNN prior refuses them.
        """
        if output_type not in PIPELINE_OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {PIPELINE_OUTPUT_TYPES}, got {output_type!r}")
        if image is not None:
            codes = self.vqvae.encode(self._pixel_values(image)).indices
        else:
            tokens = self._sample_codes(
                batch_size, class_labels, temperature, generator, guidance_scale=guidance_scale, top_k=top_k, top_p=top_p
            )
            codes = self.vqvae.config.code_layout.from_prior_grid(tokens)

        if output_type == "latent":
            images = codes
        else:
            reconstruction = self.vqvae.decode(codes).reconstruction
            images = image_processor_of(self).postprocess(reconstruction, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, codes)
        return VQVAEPipelineOutput(images=images, codes=codes)

    def sample_grid(
        self, images_per_row: int = 8, num_rows: int = 4, temperature: float = 1.0, seed: int = 0
    ) -> PIL.Image.Image:
        """One image of samples: for a class-conditional prior one row per class, named at its left
        (`num_rows` is ignored), else `num_rows` rows."""
        if not isinstance(images_per_row, int) or images_per_row < 1 or not isinstance(num_rows, int) or num_rows < 1:
            raise ValueError(f"images_per_row and num_rows must be integers >= 1, got {images_per_row!r} and {num_rows!r}")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        num_classes = self.prior.config.num_classes
        if num_classes:
            class_labels = torch.arange(num_classes).repeat_interleave(images_per_row)
            num_rows = num_classes
        else:
            class_labels = None
        images = self(
            batch_size=images_per_row * num_rows, class_labels=class_labels, temperature=temperature,
            generator=generator,
        ).images
        grid = make_image_grid(images, rows=num_rows, cols=images_per_row)
        if not num_classes:
            return grid
        names = [str((self.prior.config.id2label or {}).get(index, index)) for index in range(num_classes)]
        return with_row_labels(grid, names)

    def _sample_codes(self, batch_size, class_labels, temperature, generator, **options) -> torch.LongTensor:
        num_labels = None
        if class_labels is not None:
            class_labels = self.class_label_ids(class_labels)
            num_labels = class_labels.numel()
        batch_size = batch_size_of(batch_size, num_labels, "class label", "image")
        if num_labels == 1:
            class_labels = class_labels.expand(batch_size)
        with self.progress_bar(total=self.prior.config.grid_height) as progress_bar:
            return sample_prior(
                self.prior, batch_size, class_labels=class_labels, temperature=temperature, generator=generator,
                progress_callback=lambda rows_done, rows: progress_bar.update(), **options,
            )

    def _pixel_values(self, image) -> torch.Tensor:
        return pixel_values_for_vqvae(self.vqvae, image_processor_of(self), image)


def image_processor_of(pipeline) -> VQVAEImageProcessor:
    """The image processor of a pipeline over a `vqvae`: its optional `image_processor` component, or one matching
    the VQ-VAE when that is None (which `save_pretrained` records and `from_pretrained` gives back)."""
    if pipeline.image_processor is not None:
        return pipeline.image_processor
    return VQVAEImageProcessor.for_vqvae(pipeline.vqvae.config)


def pixel_values_for_vqvae(vqvae: VQVAEModel, image_processor: VQVAEImageProcessor, image) -> torch.Tensor:
    """A pipeline's `image=` input as pixel values on the VQ-VAE's device and dtype: PIL images and
    arrays through the image processor, float tensors of pixel values in [-1, 1] as they are."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        pixel_values = image
    else:
        pixel_values = image_processor(image, return_tensors="pt")["pixel_values"]
    parameter = next(vqvae.parameters())
    return pixel_values.to(device=parameter.device, dtype=parameter.dtype)
