"""HierarchicalVQVAEPipeline: the paper's two-stage hierarchy (section 4.2) as a generator. A PixelCNN prior
(or a transformer prior) samples the stage-2 codes (3x1), the stage-2 model's conditional PixelCNN samples the stage-1 codes (21x21)
given them, the stage-1 VQ-VAE decodes pixels."""

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput, make_image_grid

from .pipeline_cards import hierarchical_pipeline_model_card
from ..models.hierarchical_vqvae.modeling_hierarchical_vqvae import HierarchicalVQVAEModel
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from .pipeline_utils import HubDiffusionPipeline, Prior, sample_prior
from .pipeline_vqvae import PIPELINE_OUTPUT_TYPES, image_processor_of, pixel_values_for_vqvae


@dataclass
class HierarchicalVQVAEPipelineOutput(BaseOutput):
    """
    Args:
        images: a list of PIL images, a (B, H, W, C) array in [0, 1] ("np"), a (B, C, H, W) tensor in [0, 1]
            ("pt"), or the stage-1 code grids themselves ("latent").
        codes: the stage-1 code grids, (B, 21, 21) integers in [0, K1).
        latent_codes: the stage-2 code grids, (B, 3, 1) integers in [0, K2).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    codes: torch.LongTensor | None = None
    latent_codes: torch.LongTensor | None = None


class HierarchicalVQVAEPipeline(HubDiffusionPipeline):
    r"""
    Generate frames through both stages of a two-stage VQ-VAE: the top prior samples stage-2 codes, the stage-2
    decoder samples stage-1 codes given them (cached incremental sampling), the stage-1 VQ-VAE decodes them.
    With `image=` it reconstructs frames through both stages instead: stage-1 codes, stage-2 codes, stage-1 codes
    sampled back from the stage-2 codes, pixels.

    Args:
        vqvae ([`VQVAEModel`]): the stage-1 VQ-VAE (pixels <-> stage-1 codes).
        stage2 ([`HierarchicalVQVAEModel`]): the stage-2 model over the stage-1 code grid; its input K and grid
            must be the stage-1 VQ-VAE's (checked here).
        prior ([`PixelCNNPriorModel`] or [`TransformerPriorModel`]): a prior over the stage-2 code grid; its K and
            grid must be the stage-2 model's (checked here).
        image_processor ([`VQVAEImageProcessor`], *optional*): for `image=` inputs and decoded pixels. Without one
            (None, as diffusers' optional components are), one matching the VQ-VAE is used; None is what
            `save_pretrained` records and `from_pretrained` gives back.
    """

    model_cpu_offload_seq = "prior->stage2->vqvae"
    _optional_components = ["image_processor"]

    def __init__(
        self,
        vqvae: VQVAEModel,
        stage2: HierarchicalVQVAEModel,
        prior: Prior,
        image_processor: VQVAEImageProcessor | None = None,
    ):
        super().__init__()
        latent_size = vqvae.config.latent_size
        stage2.check_compatible_with_vqvae(*vqvae.config.prior_code_grid(latent_size, latent_size))
        try:
            prior.check_compatible_with_vqvae(*stage2.config.prior_code_grid(*stage2.config.latent_grid))
        except ValueError as error:
            raise ValueError(f"the top prior does not fit the stage-2 model: {error}") from error
        self.register_modules(vqvae=vqvae, stage2=stage2, prior=prior, image_processor=image_processor)

    push_commit_message = "Upload hierarchical VQ-VAE pipeline with hf-vqvae"

    def model_card(self, repo_id: str, **card_fields):
        """The card `push_to_hub` uploads (`pipeline_cards.hierarchical_pipeline_model_card`: `dataset_name`, `metrics`,
        `image_path`)."""
        return hierarchical_pipeline_model_card(self.vqvae.config, self.stage2.config, self.prior.config, repo_id, **card_fields)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        image=None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> HierarchicalVQVAEPipelineOutput | tuple:
        r"""
        Args:
            batch_size (`int`, defaults to 1): frames to generate (ignored with `image=`).
            temperature (`float`, defaults to 1.0): divides the logits of the top prior and the stage-2 decoder.
            generator (`torch.Generator`, *optional*): makes sampling reproducible.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"` (the stage-1 code
                grids, not decoded).
            return_dict (`bool`, defaults to `True`): return a [`HierarchicalVQVAEPipelineOutput`] or a tuple
                `(images, codes, latent_codes)`.
            image (*optional*): frames to reconstruct through both stages (PIL images, arrays, or pixel values
                in [-1, 1] as a tensor of the VQ-VAE's size) instead of sampling.
            top_k, top_p (*optional*): a transformer top prior's top-k and nucleus cuts; a PixelCNN prior refuses them.
        """
        if output_type not in PIPELINE_OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {PIPELINE_OUTPUT_TYPES}, got {output_type!r}")
        if image is not None:
            stage1_codes = self.vqvae.encode(self._pixel_values(image)).indices
            latent_codes = self.stage2.encode(self.vqvae.config.code_layout.to_prior_grid(stage1_codes)).indices
        else:
            if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
                raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
            tokens = sample_prior(
                self.prior, batch_size, temperature=temperature, generator=generator, top_k=top_k, top_p=top_p
            )
            latent_codes = self.stage2.config.code_layout.from_prior_grid(tokens)
        with self.progress_bar(total=self.stage2.config.input_grid_height) as progress_bar:
            tokens = self.stage2.sample(
                latent_codes, temperature=temperature, generator=generator,
                progress_callback=lambda rows_done, rows: progress_bar.update(),
            )
        codes = self.vqvae.config.code_layout.from_prior_grid(tokens)

        if output_type == "latent":
            images = codes
        else:
            reconstruction = self.vqvae.decode(codes).reconstruction
            images = image_processor_of(self).postprocess(reconstruction, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, codes, latent_codes)
        return HierarchicalVQVAEPipelineOutput(images=images, codes=codes, latent_codes=latent_codes)

    def sample_grid(
        self, images_per_row: int = 8, num_rows: int = 4, temperature: float = 1.0, seed: int = 0
    ) -> PIL.Image.Image:
        """One image of `num_rows` x `images_per_row` samples drawn from `seed`."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        images = self(batch_size=images_per_row * num_rows, temperature=temperature, generator=generator).images
        return make_image_grid(images, rows=num_rows, cols=images_per_row)

    def _pixel_values(self, image) -> torch.Tensor:
        pixel_values = pixel_values_for_vqvae(self.vqvae, image_processor_of(self), image)
        size = self.vqvae.config.sample_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(
                f"frames must be {size}x{size}, the stage-1 VQ-VAE's sample_size, since the stage-2 model takes its "
                f"{self.vqvae.config.latent_size}x{self.vqvae.config.latent_size} code grids; got pixel values of shape "
                f"{tuple(pixel_values.shape)} (PIL images and arrays are resized for you)"
            )
        return pixel_values
