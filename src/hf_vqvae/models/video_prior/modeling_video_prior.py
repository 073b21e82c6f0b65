"""Action-conditioned video prior over VQ-VAE code grids (section 4.4 of van den Oord et al. 2017): the grid of each
frame is modelled by the package's gated PixelCNN (`layers.gated_pixelcnn.GatedPixelCNN`), conditioned in every gate
on a map computed from the grids of the frames before it and the action taken after the last of them. Frames are
generated grid after grid, each conditioned on its predecessors' codes, without ever going back to pixels.

Causality in time holds by construction: the conditioning map of frame t reads frames t - context_frames .. t - 1
and action t - 1 only; within a frame the PixelCNN's shifted stacks keep raster order.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.utils import ModelOutput

from .model_card_video_prior import video_prior_model_card
from ...input_checks import check_ids_in_range, check_not_empty, describe, is_integer_tensor
from ...layers.gated_pixelcnn import GatedPixelCNN
from ...layers.sampling import check_temperature
from ...modeling_utils import HubPreTrainedModel, check_code_grid_of_vqvae, fixed_codebook_error
from .configuration_video_prior import VideoPriorConfig


@dataclass
class VideoPriorOutput(ModelOutput):
    r"""
    Output of [`VideoPriorModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Mean negative log-likelihood per code of the predicted frames, in nats.
        logits (`torch.FloatTensor` of shape `(batch_size, num_predicted_frames, num_embeddings, grid_height, grid_width)`):
            Unnormalised log-probabilities of each code of each frame after the first `context_frames`, given the
            `context_frames` grids before it, the action leading to it and the codes before it in raster order.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states`):
            The PixelCNN's embedded input codes and each gated layer's horizontal-stack output, each of shape
            `(batch_size * num_predicted_frames, hidden_channels, grid_height, grid_width)`: the PixelCNN's own
            layout, every predicted frame folded into the batch (`.unflatten(0, (batch_size, -1))` separates them),
            so that the tensors are those the logits are computed from and gradients reach them.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class ResidualConvBlock(nn.Module):
    """x + conv3x3(relu(x)): mixes the context over neighbouring code positions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.conv(F.relu(hidden))


class VideoPriorModel(HubPreTrainedModel):
    r"""
    An action-conditioned prior over the code grids of a sequence of frames: `model(input_ids=codes, actions=actions,
    labels=codes)` scores every frame after the first `context_frames` (teacher forcing, all frames at once), and
    `model.sample(context_ids, actions)` generates one grid per action, each from the grids before it.

    `input_ids` are (batch, frames, grid_height, grid_width) codes; `actions[:, i]` is the action taken after frame
    `context_frames + i - 1`, the one that leads to frame `context_frames + i`: as many actions as predicted frames.
    """

    config_class = VideoPriorConfig
    base_model_prefix = "video_prior"
    main_input_name = "input_ids"

    def __init__(self, config: VideoPriorConfig):
        super().__init__(config)
        self.context_embedding = nn.Embedding(config.num_embeddings, config.context_embedding_dim)
        self.action_embedding = nn.Embedding(config.num_actions, config.context_embedding_dim)
        self.conditioning_input = nn.Conv2d(
            (config.context_frames + 1) * config.context_embedding_dim, config.conditioning_channels, 1
        )
        self.conditioning_blocks = nn.ModuleList(
            ResidualConvBlock(config.conditioning_channels) for _ in range(config.conditioning_layers)
        )
        self.pixelcnn = GatedPixelCNN(
            config.num_embeddings, config.hidden_channels, config.num_layers, config.kernel_size, config.skip_channels,
            conditioning_channels=config.conditioning_channels,
        )
        self.post_init()

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return video_prior_model_card(self.config, repo_id, **card_fields)

    def get_input_embeddings(self) -> nn.Embedding:
        """The PixelCNN's embedding of the codes it predicts, what transformers and PEFT call the input embeddings
        (as the prior's; the context frames' codes are embedded by `context_embedding`)."""
        return self.pixelcnn.code_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.pixelcnn.code_embedding = value

    def resize_token_embeddings(self, *args, **kwargs):
        """Refused: the codes are a VQ-VAE's codebook, and the PixelCNN has one logit per code."""
        raise fixed_codebook_error("the video prior", "num_embeddings", "VideoPriorConfig")

    # ----------------------------------------------------------------------------------------------- checks

    def check_compatible_with_vqvae(self, num_embeddings: int, latent_height: int, latent_width: int) -> None:
        """Raise ValueError unless this prior models the codes of a VQ-VAE with this codebook size and grid."""
        check_code_grid_of_vqvae("the video prior", self.config, num_embeddings, latent_height, latent_width)

    def check_codes(self, name: str, codes, min_frames: int) -> None:
        """Raise ValueError unless `codes` is a (batch, frames >= min_frames, grid_height, grid_width) integer
        tensor of values in [0, K)."""
        config = self.config
        grid = (config.grid_height, config.grid_width)
        if not is_integer_tensor(codes):
            raise ValueError(f"`{name}` must be an integer tensor of codes (e.g. torch.long), got {describe(codes)}")
        if codes.ndim != 4 or tuple(codes.shape[2:]) != grid:
            raise ValueError(
                f"`{name}` must have shape (batch_size, frames, {grid[0]}, {grid[1]}): frames of the prior's "
                f"(grid_height, grid_width) grids, got {tuple(codes.shape)}"
            )
        if codes.shape[1] < min_frames:
            raise ValueError(
                f"`{name}` holds {codes.shape[1]} frames but the video prior needs at least {min_frames} "
                f"(context_frames={config.context_frames}{' + 1 to predict' if min_frames > config.context_frames else ''})"
            )
        check_not_empty(f"`{name}`", codes, "sequences of code grids")
        check_ids_in_range(f"`{name}` must hold codes", codes, config.num_embeddings, "num_embeddings")

    def check_actions(self, actions, batch_size: int, num_frames: int | None = None) -> torch.LongTensor:
        """`actions` as a (batch_size, num_frames) long tensor on the model's device, one action per predicted
        frame (any number >= 1 when `num_frames` is None); ValueError for another count, a non-integer type or an
        id outside [0, num_actions)."""
        num_actions = self.config.num_actions
        if not isinstance(actions, torch.Tensor):
            try:
                actions = torch.as_tensor(actions)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ValueError(f"`actions` must be integer action ids, got {type(actions).__name__}: {error}") from error
        if not is_integer_tensor(actions):
            raise ValueError(f"`actions` must be integer action ids in [0, {num_actions}), got {describe(actions)}")
        expected = (batch_size, num_frames if num_frames is not None else max(actions.shape[-1:], default=1))
        if actions.ndim != 2 or tuple(actions.shape) != expected or expected[1] < 1:
            frames = num_frames if num_frames is not None else "num_frames >= 1"
            raise ValueError(
                f"`actions` must have shape ({batch_size}, {frames}): one action per frame to predict "
                f"(the action taken after the frame before it), got {tuple(actions.shape)}"
            )
        check_ids_in_range("`actions` must be action ids", actions, num_actions, "num_actions")
        return actions.to(self.device, torch.long)

    # ----------------------------------------------------------------------------------------------- forward

    def conditioning_map(self, context_ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The map every gate reads, (batch, conditioning_channels, grid_height, grid_width), from unchecked
        context grids (batch, context_frames, grid_height, grid_width) and the (batch,) actions taken after the last
        of them."""
        batch, frames, height, width = context_ids.shape
        context = self.context_embedding(context_ids)  # (batch, frames, height, width, dim)
        context = context.permute(0, 1, 4, 2, 3).reshape(batch, -1, height, width)
        action = self.action_embedding(actions)[:, :, None, None].expand(-1, -1, height, width)
        hidden = self.conditioning_input(torch.cat([context, action], dim=1))
        for block in self.conditioning_blocks:
            hidden = block(hidden)
        return hidden

    def _logits(
        self, input_ids: torch.Tensor, actions: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Logits (batch, frames - context_frames, K, height, width) for unchecked codes and actions, and with
        `output_hidden_states` the PixelCNN's activations (every predicted frame folded into the batch)."""
        context_frames = self.config.context_frames
        batch, frames, height, width = input_ids.shape
        predicted = frames - context_frames
        # Frame t's context: frames t - context_frames .. t - 1, every predicted frame folded into the batch.
        window = torch.arange(predicted, device=input_ids.device)[:, None] + torch.arange(context_frames, device=input_ids.device)
        context = input_ids[:, window].reshape(batch * predicted, context_frames, height, width)
        targets = input_ids[:, context_frames:].reshape(batch * predicted, height, width)
        conditioning = self.conditioning_map(context, actions.reshape(-1))
        logits, hidden_states = self.pixelcnn(targets, conditioning=conditioning, output_hidden_states=output_hidden_states)
        return logits.reshape(batch, predicted, *logits.shape[1:]), hidden_states

    def forward(
        self,
        input_ids: torch.LongTensor,
        actions: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> VideoPriorOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, frames, grid_height, grid_width)`):
                The code grids of `frames > context_frames` successive frames, values in `[0, num_embeddings)`.
            actions (`torch.LongTensor` of shape `(batch_size, frames - context_frames)`):
                `actions[:, i]`: the action taken after frame `context_frames + i - 1`, leading to frame
                `context_frames + i`; ids in `[0, num_actions)`.
            labels (`torch.LongTensor` of shape `(batch_size, frames, grid_height, grid_width)`, *optional*):
                Codes to score, the inputs themselves: `model(input_ids=codes, actions=actions, labels=codes)`; the
                first `context_frames` frames are context and not scored.
            output_hidden_states (`bool`, *optional*):
                Also return the PixelCNN's embedded input and each layer's output (default:
                `config.output_hidden_states`).
            return_dict (`bool`, *optional*):
                Return a [`VideoPriorOutput`] (default: `config.return_dict`) or a tuple.
        """
        self.check_codes("input_ids", input_ids, self.config.context_frames + 1)
        batch, frames = input_ids.shape[:2]
        actions = self.check_actions(actions, batch, frames - self.config.context_frames)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        logits, hidden_states = self._logits(input_ids, actions, bool(output_hidden_states))
        loss = None
        if labels is not None:
            self.check_codes("labels", labels, self.config.context_frames + 1)
            if labels.shape != input_ids.shape:
                raise ValueError(
                    f"`labels` must have the shape of `input_ids` {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
            targets = labels[:, self.config.context_frames :].long()
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(0, 1))
        output = VideoPriorOutput(loss=loss, logits=logits, hidden_states=hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def bits_per_code(self, input_ids: torch.LongTensor, actions: torch.LongTensor) -> torch.Tensor:
        """Negative log2-likelihood per code of each predicted frame: a (batch_size, frames - context_frames) tensor."""
        self.check_codes("input_ids", input_ids, self.config.context_frames + 1)
        batch, frames = input_ids.shape[:2]
        actions = self.check_actions(actions, batch, frames - self.config.context_frames)
        logits = self._logits(input_ids, actions)[0].float()
        targets = input_ids[:, self.config.context_frames :].long()
        nats = F.cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1), reduction="none")
        return nats.flatten(1).mean(1).reshape(batch, -1) / math.log(2)

    # ----------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self,
        context_ids: torch.LongTensor,
        actions: torch.LongTensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.LongTensor:
        """
        Generate one frame's code grid per action, each conditioned on the `context_frames` grids before it (the
        last ones of `context_ids`, then the generated ones); returns (batch_size, num_frames, grid_height,
        grid_width) codes. Nothing is decoded.

        Args:
            context_ids: (batch_size, frames >= context_frames, grid_height, grid_width) codes of the observed frames.
            actions: (batch_size, num_frames) action ids; `actions[:, i]` is taken after the i-th frame before the
                one it leads to (the first after the last context frame).
            temperature: divides the logits; below 1 sharpens, above 1 flattens; at least 1e-3.
            generator: the source of randomness; both samplers draw the same numbers in the same order.
            use_cache: the PixelCNN's cached incremental sampler; False runs the whole network per position.
            progress_callback: called after each row as `progress_callback(rows_done, num_frames * grid_height)`.
        """
        config = self.config
        self.check_codes("context_ids", context_ids, config.context_frames)
        check_temperature(temperature)
        batch = context_ids.shape[0]
        actions = self.check_actions(actions, batch)
        num_frames = actions.shape[1]
        frames = list(context_ids.to(self.device).long()[:, -config.context_frames :].unbind(1))
        total_rows = num_frames * config.grid_height
        for index in range(num_frames):
            conditioning = self.conditioning_map(torch.stack(frames[-config.context_frames :], dim=1), actions[:, index])
            rows_before = index * config.grid_height

            def row_done(rows_done: int, _rows: int, rows_before=rows_before) -> None:
                if progress_callback is not None:
                    progress_callback(rows_before + rows_done, total_rows)

            frames.append(
                self.pixelcnn.sample(
                    batch, config.grid_height, config.grid_width, conditioning=conditioning, temperature=temperature,
                    generator=generator, use_cache=use_cache, progress_callback=row_done,
                )
            )
        return torch.stack(frames[config.context_frames :], dim=1)


__all__ = ["VideoPriorModel", "VideoPriorOutput"]
