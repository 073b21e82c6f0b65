"""mu-law companding (ITU-T G.711), the WaveNet's discretisation of a waveform into `channels` levels: more levels
near silence, where speech spends most of its time, than a uniform quantizer of the same size."""

import math

import torch


def mu_law_encode(audio: torch.Tensor, channels: int = 256) -> torch.LongTensor:
    """Floats in [-1, 1] (clipped) -> integers in [0, channels)."""
    mu = channels - 1
    audio = audio.float().clamp(-1.0, 1.0)
    companded = torch.sign(audio) * torch.log1p(mu * audio.abs()) / math.log1p(mu)
    return ((companded + 1) / 2 * mu + 0.5).floor().long().clamp_(0, mu)


def mu_law_decode(levels: torch.Tensor, channels: int = 256) -> torch.Tensor:
    """Integers in [0, channels) -> floats in [-1, 1]: the inverse of `mu_law_encode` up to its quantization."""
    mu = channels - 1
    companded = 2 * levels.float() / mu - 1
    return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(mu)) / mu
