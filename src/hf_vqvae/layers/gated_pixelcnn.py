"""The gated PixelCNN layer (van den Oord et al. 2016, arXiv 1606.05328), shared by every autoregressive
model over code grids in the package, and the helpers of its cached sampler.

Causality comes from shifted inputs and cropped kernels, not from masked weights: the model's first
vertical input is the code embedding shifted down one row and its first horizontal input the embedding
shifted right one column (mask A: a position never sees its own code); every vertical kernel covers the
current row and `kernel_size // 2` rows above it, every horizontal kernel the current column and
`kernel_size // 2` columns to its left (mask B).
"""

import torch
import torch.nn.functional as F
from torch import nn


def gate(pre_activation: torch.Tensor) -> torch.Tensor:
    """tanh(content) * sigmoid(gate), the two halves split along the channels."""
    content, gate = pre_activation.chunk(2, dim=1)
    return torch.tanh(content) * torch.sigmoid(gate)


def down_shift(grid: torch.Tensor) -> torch.Tensor:
    return F.pad(grid, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(grid: torch.Tensor) -> torch.Tensor:
    return F.pad(grid, (1, 0))[..., :-1]


def conv_at_one_position(conv: nn.Conv2d, window: torch.Tensor) -> torch.Tensor:
    """`conv` evaluated at a single output position, from the (batch, in_channels[, kernel positions]) window it
    covers. A matrix product: on a batch of one position it is several times faster than `F.conv2d`."""
    return F.linear(window.flatten(1), conv.weight.flatten(1), conv.bias)


class GatedPixelCNNLayer(nn.Module):
    """One gated layer: a vertical stack that sees rows above, and a horizontal stack that sees the positions to
    the left in the current row plus, through a 1x1 convolution, the vertical stack (no blind spot). The horizontal
    stack is residual and feeds a skip connection; a class label adds a learned bias inside every gate."""

    def __init__(self, channels: int, kernel_size: int, skip_channels: int, num_classes: int = 0, feeds_next_layer: bool = True):
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

    def class_bias(self, class_labels: torch.Tensor | None) -> torch.Tensor | None:
        """(batch, 4 * hidden_channels, 1, 1) gate biases of the labels, or None for an unconditional prior."""
        if self.class_embedding is None:
            return None
        return self.class_embedding(class_labels)[:, :, None, None]

    def vertical(
        self, padded_vertical: torch.Tensor, class_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertical stack on an input already padded for the kernel (`half_kernel` rows on top and columns on
        each side). Returns its output and its contribution to the horizontal stack's pre-activation."""
        pre_activation = self.vertical_conv(padded_vertical)
        to_horizontal = self.vertical_to_horizontal(pre_activation)
        if class_bias is not None:
            vertical_bias, horizontal_bias = class_bias.chunk(2, dim=1)
            pre_activation = pre_activation + vertical_bias
            to_horizontal = to_horizontal + horizontal_bias
        return gate(pre_activation), to_horizontal

    def forward(
        self, vertical: torch.Tensor, horizontal: torch.Tensor, class_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole grids in, whole grids out: (vertical, horizontal, skip)."""
        half = self.half_kernel
        vertical, to_horizontal = self.vertical(F.pad(vertical, (half, half, half, 0)), class_bias)
        gated = gate(self.horizontal_conv(F.pad(horizontal, (half, 0))) + to_horizontal)
        if self.horizontal_residual is not None:
            horizontal = horizontal + self.horizontal_residual(gated)
        return vertical, horizontal, self.skip(gated)

    def horizontal_step(
        self, horizontal_window: torch.Tensor, to_horizontal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The horizontal stack at one position, for the cached sampler. `horizontal_window` is
        (batch, hidden_channels, half_kernel + 1): the layer's horizontal input at the position (last) and at the
        `half_kernel` positions to its left; `to_horizontal` (batch, 2 * hidden_channels) the vertical stack's
        contribution there. Returns the horizontal output and the skip, each (batch, channels)."""
        gated = gate(conv_at_one_position(self.horizontal_conv, horizontal_window) + to_horizontal)
        horizontal = horizontal_window[:, :, -1]
        if self.horizontal_residual is not None:
            horizontal = horizontal + conv_at_one_position(self.horizontal_residual, gated)
        return horizontal, conv_at_one_position(self.skip, gated)
