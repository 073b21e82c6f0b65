"""The gated PixelCNN layer (van den Oord et al. 2016, arXiv 1606.05328), shared by every autoregressive
model over code grids in the package (its cached sampler is in `gated_pixelcnn_sampler.py`).

Causality comes from shifted inputs and cropped kernels, not from masked weights: the model's first
vertical input is the code embedding shifted down one row and its first horizontal input the embedding
shifted right one column (mask A: a position never sees its own code); every vertical kernel covers the
current row and `kernel_size // 2` rows above it, every horizontal kernel the current column and
`kernel_size // 2` columns to its left (mask B).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .gated_pixelcnn_sampler import CachedGatedPixelCNNSampler
from .gates import gate
from .sampling import draw_from_logits


def down_shift(grid: torch.Tensor) -> torch.Tensor:
    return F.pad(grid, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(grid: torch.Tensor) -> torch.Tensor:
    return F.pad(grid, (1, 0))[..., :-1]


class GatedPixelCNNLayer(GradientCheckpointingLayer):
    """One gated layer: a vertical stack that sees rows above, and a horizontal stack that sees the positions to
    the left in the current row plus, through a 1x1 convolution, the vertical stack (no blind spot). The horizontal
    stack is residual and feeds a skip connection.

    Conditioning (the paper's V h inside every gate) comes as a gate bias: a class label's learned embedding
    (`num_classes`), and/or a 1x1 convolution of a conditioning map with `conditioning_channels` channels laid
    over the grid (location-dependent conditioning: upsampled latents, the codes of previous frames...).

    Under transformers' gradient checkpointing (`model.gradient_checkpointing_enable()` on a model holding these
    layers) `forward` is recomputed in the backward pass instead of keeping its activations.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        skip_channels: int,
        num_classes: int = 0,
        conditioning_channels: int = 0,
        feeds_next_layer: bool = True,
    ):
        super().__init__()
        self.half_kernel = kernel_size // 2
        self.vertical_conv = nn.Conv2d(channels, 2 * channels, (self.half_kernel + 1, kernel_size))
        # Reads the vertical pre-activations, as in the paper's figure 2.
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_conv = nn.Conv2d(channels, 2 * channels, (1, self.half_kernel + 1))
        # The last layer's horizontal output would feed nothing (the logits read the skips), so it
        # has no residual convolution: DDP refuses parameters that never get a gradient.
        self.horizontal_residual = nn.Conv2d(channels, channels, 1) if feeds_next_layer else None
        self.skip = nn.Conv2d(channels, skip_channels, 1)
        # The vertical gate's class bias and the horizontal gate's, concatenated.
        self.class_embedding = nn.Embedding(num_classes, 4 * channels) if num_classes else None
        self.conditioning_projection = nn.Conv2d(conditioning_channels, 4 * channels, 1) if conditioning_channels else None

    def gate_bias(self, class_labels: torch.Tensor | None, conditioning: torch.Tensor | None) -> torch.Tensor | None:
        """The gate biases, (batch, 4 * channels, 1, 1) from a class label and/or (batch, 4 * channels, height,
        width) from a conditioning map; None for an unconditional layer."""
        bias = None
        if self.class_embedding is not None:
            bias = self.class_embedding(class_labels)[:, :, None, None]
        if self.conditioning_projection is not None:
            projected = self.conditioning_projection(conditioning)
            bias = projected if bias is None else bias + projected
        return bias

    def vertical(
        self, padded_vertical: torch.Tensor, gate_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertical stack on an input already padded for the kernel (`half_kernel` rows on top and columns on
        each side); `gate_bias` covers the same output rows. Returns its output and its contribution to the horizontal stack's pre-activation."""
        pre_activation = self.vertical_conv(padded_vertical)
        to_horizontal = self.vertical_to_horizontal(pre_activation)
        if gate_bias is not None:
            vertical_bias, horizontal_bias = gate_bias.chunk(2, dim=1)
            pre_activation = pre_activation + vertical_bias
            to_horizontal = to_horizontal + horizontal_bias
        return gate(pre_activation), to_horizontal

    def forward(
        self, vertical: torch.Tensor, horizontal: torch.Tensor, gate_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole grids in, whole grids out: (vertical, horizontal, skip)."""
        half = self.half_kernel
        vertical, to_horizontal = self.vertical(F.pad(vertical, (half, half, half, 0)), gate_bias)
        gated = gate(self.horizontal_conv(F.pad(horizontal, (half, 0))) + to_horizontal)
        if self.horizontal_residual is not None:
            horizontal = horizontal + self.horizontal_residual(gated)
        return vertical, horizontal, self.skip(gated)


class GatedPixelCNN(nn.Module):
    """A gated PixelCNN over a grid of codes from a codebook of K: code embedding, `num_layers` gated layers, skip
    connections summed into two 1x1 output layers giving K logits per position; optionally conditioned on a class
    label and/or a conditioning map. Shared by every autoregressive model over code grids in the package.

    `forward(codes)` gives the logits of every position at once (teacher forcing); `sample` draws grids in raster
    order, by default with the cached incremental sampler (Ramachandran et al. 2017): the vertical stack is computed
    once per row and the horizontal stack once per position from caches of each layer's recent inputs, instead of
    running the network over the whole grid for every position (`use_cache=False`, the reference). Both samplers
    draw one uniform number per grid and position in the same order, so a seeded generator gives the same codes.
    """

    def __init__(
        self,
        num_embeddings: int,
        hidden_channels: int,
        num_layers: int,
        kernel_size: int,
        skip_channels: int,
        num_classes: int = 0,
        conditioning_channels: int = 0,
    ):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.code_embedding = nn.Embedding(num_embeddings, hidden_channels)
        self.layers = nn.ModuleList(
            GatedPixelCNNLayer(
                hidden_channels, kernel_size, skip_channels, num_classes, conditioning_channels,
                feeds_next_layer=index < num_layers - 1,
            )
            for index in range(num_layers)
        )
        self.output_hidden = nn.Conv2d(skip_channels, skip_channels, 1)
        self.output_logits = nn.Conv2d(skip_channels, num_embeddings, 1)

    def gate_biases(self, class_labels: torch.Tensor | None, conditioning: torch.Tensor | None) -> list:
        """Every layer's gate bias (see `GatedPixelCNNLayer.gate_bias`)."""
        return [layer.gate_bias(class_labels, conditioning) for layer in self.layers]

    def forward(
        self,
        codes: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        conditioning: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Logits (batch, K, height, width) of unchecked codes (batch, height, width), and with
        `output_hidden_states` the embedded input and each layer's horizontal output. Any grid size works; a
        conditioning map must cover the grid."""
        embedded = self.code_embedding(codes).permute(0, 3, 1, 2)
        vertical, horizontal = down_shift(embedded), right_shift(embedded)
        hidden_states = [embedded] if output_hidden_states else None
        skips = 0
        for layer, bias in zip(self.layers, self.gate_biases(class_labels, conditioning)):
            vertical, horizontal, skip = layer(vertical, horizontal, bias)
            skips = skips + skip
            if output_hidden_states:
                hidden_states.append(horizontal)
        logits = self.output_logits(F.relu(self.output_hidden(F.relu(skips))))
        return logits, tuple(hidden_states) if output_hidden_states else None

    @torch.no_grad()
    def sample(
        self,
        batch_size: int,
        height: int,
        width: int,
        class_labels: torch.Tensor | None = None,
        conditioning: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.LongTensor:
        """(batch_size, height, width) codes drawn in raster order; arguments unchecked (the models check them);
        `generator` may be a list of one generator per grid (see `draw`).
        `progress_callback(rows_done, height)` is called after each row."""
        sampler = self._sample_cached if use_cache else self._sample_plain
        return sampler(batch_size, height, width, class_labels, conditioning, temperature, generator, progress_callback)

    def draw(
        self, logits: torch.Tensor, temperature: float, generator: torch.Generator | list[torch.Generator] | None
    ) -> torch.Tensor:
        """One code per row of (batch, K) logits (see `layers.sampling.draw_from_logits`): both samplers draw in the
        same order, so a seeded generator (or a list of one generator per row) gives the same codes."""
        return draw_from_logits(logits, temperature, generator)

    def _sample_plain(
        self, batch_size, height, width, class_labels, conditioning, temperature, generator, progress_callback
    ) -> torch.LongTensor:
        device = self.code_embedding.weight.device
        codes = torch.zeros(batch_size, height, width, dtype=torch.long, device=device)
        for row in range(height):
            for column in range(width):
                logits, _ = self(codes, class_labels, conditioning)
                codes[:, row, column] = self.draw(logits[:, :, row, column], temperature, generator)
            if progress_callback is not None:
                progress_callback(row + 1, height)
        return codes

    def _sample_cached(
        self, batch_size, height, width, class_labels, conditioning, temperature, generator, progress_callback
    ) -> torch.LongTensor:
        """Incremental sampling (see `CachedGatedPixelCNNSampler`): the vertical stack once per row, the horizontal
        stack once per position, from caches of each layer's recent inputs."""
        sampler = CachedGatedPixelCNNSampler(self, batch_size, height, width, class_labels, conditioning)
        return sampler.sample(temperature, generator, progress_callback)
