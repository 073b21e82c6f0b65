"""Drawing one category per row of logits, shared by every autoregressive sampler in the package (codes of the
gated PixelCNN, mu-law samples of the WaveNet).

A cached sampler and its plain reference compute the same logits in different orders of floating-point
operations. Drawing by inverse CDF from one uniform number per row, taken from the generator in the same order by
both, makes them pick the same category unless a uniform number lands within rounding distance of a CDF boundary.
"""

import torch


def draw_from_logits(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | list[torch.Generator] | None
) -> torch.LongTensor:
    """One category per row of (batch, K) logits: where one uniform number per row falls in the CDF of
    softmax(logits / temperature). With a list of generators (one per row) row i draws from generator i alone,
    exactly what a batch of one with that generator draws."""
    # (batch, 1) uniform numbers: the same stream as (batch,), in the shape `searchsorted` wants. A draw runs once per
    # sampled position, so it spends no Python-side call it can avoid (each costs about a microsecond).
    if isinstance(generator, (list, tuple)):
        uniform = torch.cat([torch.rand(1, 1, generator=row, device=row.device).to(logits.device) for row in generator])
    else:
        uniform_device = generator.device if generator is not None else logits.device
        uniform = torch.rand(logits.shape[0], 1, generator=generator, device=uniform_device).to(logits.device)
    scaled = logits if logits.dtype == torch.float32 else logits.float()
    if temperature != 1:  # at temperature 1 the division would return the logits unchanged
        scaled = scaled / temperature
    cdf = torch.softmax(scaled, dim=-1).cumsum_(dim=-1)
    # right=True never picks a category of probability 0; scaling by cdf[:, -1] absorbs the sum's rounding.
    drawn = torch.searchsorted(cdf, uniform.mul_(cdf[:, -1:]), right=True).view(-1)
    return drawn.clamp_(max=logits.shape[-1] - 1)
