"""VideoPredictionPipeline: encode the observed frames with the VQ-VAE, generate the code grids of the next frames
with the action-conditioned video prior, decode them at the end (section 4.4 of van den Oord et al. 2017)."""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput, export_to_gif, make_image_grid

from .pipeline_cards import video_pipeline_model_card
from ..models.video_prior.modeling_video_prior import VideoPriorModel
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from .pipeline_utils import HubDiffusionPipeline
from .pipeline_vqvae import PIPELINE_OUTPUT_TYPES, image_processor_of


@dataclass
class VideoPredictionPipelineOutput(BaseOutput):
    """
    Args:
        frames: the predicted frames of each sequence: a list (one per sequence) of lists of PIL images, a
            (B, N, H, W, C) array in [0, 1] ("np"), a (B, N, C, H, W) tensor in [0, 1] ("pt"), or the code grids
            themselves ("latent").
        codes: the predicted code grids, (B, N, h, w) integers in [0, K).
        context_codes: the code grids of the observed frames, (B, T, h, w).
    """

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor
    codes: torch.LongTensor | None = None
    context_codes: torch.LongTensor | None = None


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple))


class VideoPredictionPipeline(HubDiffusionPipeline):
    r"""
    Predict the frames that follow observed ones under given actions, entirely in latent space: the VQ-VAE encodes
    the observed frames into code grids, the video prior generates the grid of each next frame from the grids before
    it and the action taken, and only the generated grids are decoded, at the end.

    Args:
        vqvae ([`VQVAEModel`]): encoder, codebook and decoder of single frames.
        video_prior ([`VideoPriorModel`]): the action-conditioned prior over the VQ-VAE's code grids; its codebook
            size and grid must match the VQ-VAE's (checked here).
        image_processor ([`VQVAEImageProcessor`], *optional*): turns frames into pixel values and decoded pixels into
            PIL / numpy. Without one (None, as diffusers' optional components are), one matching the VQ-VAE is used;
            None is what `save_pretrained` records and `from_pretrained` gives back.
    """

    model_cpu_offload_seq = "video_prior->vqvae"
    push_commit_message = "Upload video prediction pipeline with hf-vqvae"
    _optional_components = ["image_processor"]

    def __init__(
        self, vqvae: VQVAEModel, video_prior: VideoPriorModel, image_processor: VQVAEImageProcessor | None = None
    ):
        super().__init__()
        latent_size = vqvae.config.latent_size
        video_prior.check_compatible_with_vqvae(vqvae.config.num_embeddings, latent_size, latent_size)
        self.register_modules(vqvae=vqvae, video_prior=video_prior, image_processor=image_processor)

    def model_card(self, repo_id: str, **card_fields):
        """The card `push_to_hub` uploads (`pipeline_cards.video_pipeline_model_card`: `dataset_name`, `metrics`, `image_path`)."""
        return video_pipeline_model_card(self.vqvae.config, self.video_prior.config, repo_id, **card_fields)

    # ----------------------------------------------------------------------------------------------- inputs

    def action_ids(self, actions, batch_size: int) -> torch.LongTensor:
        """Actions as a (batch_size, N) tensor of ids: a list of ids or names for one sequence (repeated over the
        batch) or one such list per sequence, or a tensor; names are looked up in the prior's `action_names`."""
        if isinstance(actions, torch.Tensor):
            ids = actions
        elif isinstance(actions, np.ndarray):
            ids = torch.from_numpy(actions)
        else:
            if not _is_sequence(actions) or not actions:
                raise ValueError(f"`actions` must be a non-empty list of action ids or names, got {actions!r}")
            rows = actions if _is_sequence(actions[0]) else [actions]
            ids = torch.tensor([[self._action_id(action) for action in row] for row in rows])
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim == 2 and ids.shape[0] == 1 and batch_size > 1:
            ids = ids.expand(batch_size, -1)
        if ids.ndim != 2 or ids.shape[0] != batch_size:
            raise ValueError(
                f"`actions` must hold one list of actions per sequence of frames ({batch_size}) or one list for all, "
                f"got shape {tuple(ids.shape)}"
            )
        return ids

    def _action_id(self, action) -> int:
        names = self.video_prior.config.action_names or []
        if isinstance(action, str):
            if action not in names:
                raise ValueError(f"unknown action {action!r}; the video prior knows {names or 'no action names'}")
            return names.index(action)
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
            raise ValueError(f"an action must be an integer id or a name, got {action!r}")
        return int(action)

    def context_pixel_values(self, frames) -> torch.Tensor:
        """The observed frames as (B, T, C, H, W) pixel values in [-1, 1]. `frames` is one sequence or a list of
        sequences of PIL images or (H, W, C) arrays (uint8, or floats in [0, 1]), or an array (T, H, W, C) /
        (B, T, H, W, C), or a tensor of pixel values in [-1, 1], (T, C, H, W) / (B, T, C, H, W). Frames must be
        the VQ-VAE's size: they are never rescaled."""
        config = self.vqvae.config
        size, channels = config.sample_size, config.in_channels
        if isinstance(frames, torch.Tensor):
            if not frames.is_floating_point():
                raise ValueError(
                    f"`frames` given as a tensor must be pixel values (floats in [-1, 1]), got {frames.dtype}; pass "
                    "uint8 frames as numpy arrays or PIL images"
                )
            pixel_values = frames[None] if frames.ndim == 4 else frames
            if pixel_values.ndim != 5:
                raise ValueError(f"`frames` as a tensor must be (T, C, H, W) or (B, T, C, H, W), got {tuple(frames.shape)}")
        elif isinstance(frames, np.ndarray) and frames.dtype.kind == "f":
            batch = frames[None] if frames.ndim == 4 else frames
            if batch.ndim != 5:
                raise ValueError(f"`frames` as an array must be (T, H, W, C) or (B, T, H, W, C), got {frames.shape}")
            pixel_values = torch.from_numpy(batch).permute(0, 1, 4, 2, 3).float() * 2 - 1
        else:
            if isinstance(frames, np.ndarray):
                if frames.ndim not in (4, 5):
                    raise ValueError(f"`frames` as an array must be (T, H, W, C) or (B, T, H, W, C), got {frames.shape}")
                sequences = [list(frames)] if frames.ndim == 4 else [list(sequence) for sequence in frames]
            elif _is_sequence(frames) and frames:
                sequences = [list(sequence) for sequence in frames] if _is_sequence(frames[0]) or (
                    isinstance(frames[0], np.ndarray) and frames[0].ndim == 4
                ) else [list(frames)]
            else:
                raise ValueError(f"`frames` must be a non-empty sequence of frames, got {type(frames).__name__}")
            lengths = {len(sequence) for sequence in sequences}
            if len(lengths) > 1:
                raise ValueError(f"every sequence of `frames` must hold as many frames, got lengths {sorted(lengths)}")
            for sequence in sequences:
                for frame in sequence:
                    width, height = frame.size if isinstance(frame, PIL.Image.Image) else np.shape(frame)[1::-1]
                    if (height, width) != (size, size):
                        raise ValueError(
                            f"the frames are {width}x{height} pixels but the VQ-VAE takes {size}x{size} frames "
                            "(its sample_size); frames are not rescaled"
                        )
            flat = [frame for sequence in sequences for frame in sequence]
            pixel_values = image_processor_of(self)(flat, return_tensors="pt")["pixel_values"]
            pixel_values = pixel_values.reshape(len(sequences), -1, *pixel_values.shape[1:])
        if tuple(pixel_values.shape[2:]) != (channels, size, size):
            raise ValueError(
                f"the frames have shape {tuple(pixel_values.shape[2:])} (C, H, W) but the VQ-VAE takes "
                f"{(channels, size, size)} (in_channels, sample_size, sample_size); frames are not rescaled"
            )
        return pixel_values

    @torch.no_grad()
    def encode_frames(self, frames) -> torch.LongTensor:
        """The (B, T, h, w) code grids of observed frames (any form `context_pixel_values` takes)."""
        pixel_values = self.context_pixel_values(frames)
        parameter = next(self.vqvae.parameters())
        batch, length = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1).to(device=parameter.device, dtype=parameter.dtype)
        indices = self.vqvae.encode(flat).indices
        return indices.reshape(batch, length, *indices.shape[1:])

    @torch.no_grad()
    def decode_codes(self, codes: torch.LongTensor, output_type: str = "pil"):
        """(B, N, h, w) code grids -> frames as `__call__` returns them."""
        batch, length = codes.shape[:2]
        pixels = self.vqvae.decode(codes.flatten(0, 1)).reconstruction
        if output_type == "pil":
            images = image_processor_of(self).postprocess(pixels, output_type="pil")
            return [images[index * length : (index + 1) * length] for index in range(batch)]
        frames = image_processor_of(self).postprocess(pixels, output_type=output_type)
        return frames.reshape(batch, length, *frames.shape[1:])

    # ----------------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def __call__(
        self,
        frames,
        actions,
        num_frames: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> VideoPredictionPipelineOutput | tuple:
        r"""
        Args:
            frames: the observed frames, at least the prior's `context_frames` per sequence (see
                `context_pixel_values` for the accepted forms); one sequence or a batch of them.
            actions: what happens next, one action id or name per frame to predict: a list for one sequence (or for
                every sequence of the batch), a list of lists, or a (B, N) tensor. The first action is taken after
                the last observed frame.
            num_frames (`int`, *optional*): frames to predict; must equal the number of actions when given.
            temperature (`float`, defaults to 1.0): divides the prior's logits.
            generator (`torch.Generator`, *optional*): makes generation reproducible.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"` (the code grids).
            return_dict (`bool`, defaults to `True`): return a [`VideoPredictionPipelineOutput`] or a tuple
                `(frames, codes)`.
        """
        if output_type not in PIPELINE_OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {PIPELINE_OUTPUT_TYPES}, got {output_type!r}")
        pixel_values = self.context_pixel_values(frames)
        context_frames = self.video_prior.config.context_frames
        if pixel_values.shape[1] < context_frames:
            raise ValueError(
                f"`frames` holds {pixel_values.shape[1]} frames per sequence but the video prior predicts from "
                f"{context_frames} (context_frames); pass at least {context_frames}"
            )
        actions = self.action_ids(actions, pixel_values.shape[0])
        if num_frames is not None and num_frames != actions.shape[1]:
            raise ValueError(
                f"num_frames={num_frames} but {actions.shape[1]} actions were given; pass one action per frame to "
                "predict"
            )
        context_codes = self.encode_frames(pixel_values)
        rows = actions.shape[1] * self.video_prior.config.grid_height
        with self.progress_bar(total=rows) as progress_bar:
            codes = self.video_prior.sample(
                context_codes, actions, temperature=temperature, generator=generator,
                progress_callback=lambda rows_done, total: progress_bar.update(),
            )
        predicted = codes if output_type == "latent" else self.decode_codes(codes, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (predicted, codes)
        return VideoPredictionPipelineOutput(frames=predicted, codes=codes, context_codes=context_codes)


# ---------------------------------------------------------------------------------------------------- helpers


def save_gif(frames: Sequence[PIL.Image.Image], path: str | os.PathLike, fps: int = 4) -> str:
    """Write frames (e.g. `output.frames[0]`, or the context followed by them) as a looping animated GIF."""
    frames = list(frames)
    if not frames or not all(isinstance(frame, PIL.Image.Image) for frame in frames):
        raise ValueError("save_gif takes a non-empty list of PIL images (output_type='pil')")
    return export_to_gif([frame.convert("RGB") for frame in frames], str(path), fps=fps)


def prediction_strip(
    context: Sequence[PIL.Image.Image], truth: Sequence[PIL.Image.Image] | None, prediction: Sequence[PIL.Image.Image]
) -> PIL.Image.Image:
    """One image of an example, one row each: the context frames, the true next frames (if known) and the
    predicted ones; rows are padded with blank frames to the longest."""
    rows = [list(context), *([list(truth)] if truth is not None else []), list(prediction)]
    width = max(len(row) for row in rows)
    blank = PIL.Image.new("RGB", rows[0][0].size)
    images = [frame.convert("RGB") for row in rows for frame in row + [blank] * (width - len(row))]
    return make_image_grid(images, rows=len(rows), cols=width)
