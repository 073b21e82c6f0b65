"""The gated activation both autoregressive layers use, the gated PixelCNN's and the WaveNet's: tanh(content) *
sigmoid(gate) over the two halves of a pre-activation, as a function of the full-grid forward (`gate`) and as the
in-place form the cached samplers write into preallocated buffers (`glu`)."""

import torch


def gate(pre_activation: torch.Tensor) -> torch.Tensor:
    """tanh(content) * sigmoid(gate), the two halves split along the channels."""
    content, gate = pre_activation.chunk(2, dim=1)
    return torch.tanh(content) * torch.sigmoid(gate)


# The gate, tanh(content) * sigmoid(gate), is `tanh_` on the content half then a gated linear unit (content * sigmoid(
# gate)) written where the next product reads it: two operations instead of three. `torch._C._nn.glu` is what
# `F.glu` calls; unlike it, it takes `out=`.
glu = torch._C._nn.glu
