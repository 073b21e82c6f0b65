"""Drawing one category per row of logits, shared by every autoregressive sampler in the package (codes of the
gated PixelCNN, mu-law samples of the WaveNet).

A cached sampler and its plain reference compute the same logits in different orders of floating-point
operations. Drawing by inverse CDF from one uniform number per row, taken from the generator in the same order by
both, makes them pick the same category unless a uniform number lands within rounding distance of a CDF boundary.
"""

import math
import numbers

import torch


# Below this the logits / temperature overflow fp32 for ordinary logits: sampling becomes argmax in all but name,
# with ties broken differently by the cached and the plain samplers (all of one code against all of another).
MIN_TEMPERATURE = 1e-3


def check_temperature(temperature) -> None:
    """Raise ValueError unless `temperature` is a finite number >= `MIN_TEMPERATURE`: the one check of every
    sampler in the package (the models call it before sampling; `draw_from_logits` trusts it)."""
    is_number = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not is_number or not MIN_TEMPERATURE <= temperature < math.inf:
        raise ValueError(
            f"temperature must be a finite number >= {MIN_TEMPERATURE} (smaller ones overflow the logits, and "
            f"sampling degenerates to one value everywhere), got {temperature!r}"
        )


def draw_from_logits(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | list[torch.Generator] | None
) -> torch.LongTensor:
    """One category per row of (batch, K) logits: where one uniform number per row falls in the CDF of
    softmax(logits / temperature). With a list of generators (one per row) row i draws from generator i alone,
    exactly what a batch of one with that generator draws."""
    uniform = uniform_numbers(logits.shape[0], generator, logits.device)
    scaled = logits if logits.dtype == torch.float32 else logits.float()
    if temperature != 1:  # at temperature 1 the division would return the logits unchanged
        scaled = scaled / temperature
    cdf = torch.softmax(scaled, dim=-1).cumsum_(dim=-1)
    # right=True never picks a category of probability 0; scaling by cdf[:, -1] absorbs the sum's rounding.
    drawn = torch.searchsorted(cdf, uniform.mul_(cdf[:, -1:]), right=True).view(-1)
    return drawn.clamp_(max=logits.shape[-1] - 1)


def uniform_numbers(
    batch_size: int,
    generator: torch.Generator | list[torch.Generator] | None,
    device: torch.device,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The (batch, 1) uniform numbers of one draw, taken from `generator` (or generator i for row i) in the order
    every sampler takes them; written into `out` where given. A draw runs once per sampled position, so this spends no
    Python-side call it can avoid (each costs about a microsecond)."""
    if isinstance(generator, (list, tuple)):
        uniform = torch.cat([torch.rand(1, 1, generator=row, device=row.device).to(device) for row in generator])
    elif out is not None and (generator is None or generator.device == out.device):
        return torch.rand(batch_size, 1, generator=generator, out=out)
    else:
        uniform_device = generator.device if generator is not None else device
        uniform = torch.rand(batch_size, 1, generator=generator, device=uniform_device).to(device)
    return uniform if out is None else out.copy_(uniform)
