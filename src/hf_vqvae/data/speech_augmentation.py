"""Noise and reverberation for training speech: each training clip may be recorded again, by its example's random
draw, through a synthetic room and with added noise, as a user's recordings are, before it is scaled to the model's
level and cropped. A model trained on clean speech alone maps the noise floor of a noisy recording onto a few "noise"
codes and stops reading its codes there (docs/benchmarks.md, speech section).

- Noise: Gaussian noise of a random colour (power spectrum ~ 1 / f**exponent, the exponent drawn from [0, 2]: white
  to brown), at a signal-to-noise ratio drawn from `snr_db` below the clip's gated (speech) level.
- Reverberation: the clip through a room whose response is the direct path and a tail of Gaussian noise decaying by
  60 dB in a reverberation time drawn from `rt60_seconds`, the tail carrying a share of the energy drawn from [0.2,
  0.8] (a talker near or far from the microphone), of unit energy in all so the level is kept.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from ..models.audio_vqvae.loudness import gated_level_db


def coloured_noise(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of Gaussian noise with power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown), unit
    RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def add_noise(
    waveform: np.ndarray, snr_db: float, rng: np.random.Generator, sampling_rate: int, exponent: float = 0.0
) -> np.ndarray:
    """The clip with noise of colour `exponent` (see `coloured_noise`) at `snr_db` below its gated level; a silent
    clip is returned as it is (there is no level to set the noise by)."""
    level = gated_level_db(waveform, sampling_rate)
    if not np.isfinite(level):
        return np.asarray(waveform, dtype=np.float32)
    noise = coloured_noise(len(waveform), exponent, rng) * 10 ** ((level - snr_db) / 20)
    return (waveform + noise).astype(np.float32)


def room_response(rt60: float, rng: np.random.Generator, sampling_rate: int, tail_energy: float = 0.5) -> np.ndarray:
    """A synthetic room's impulse response of unit energy: a direct path, then Gaussian noise decaying by 60 dB in
    `rt60` seconds, the tail holding `tail_energy` of the energy."""
    times = np.arange(1, max(2, round(rt60 * sampling_rate))) / sampling_rate
    tail = rng.standard_normal(len(times)) * np.exp(-3 * np.log(10) * times / rt60)
    tail *= np.sqrt(tail_energy / (tail**2).sum())
    return np.concatenate([[np.sqrt(1 - tail_energy)], tail])


def add_reverberation(
    waveform: np.ndarray, rt60: float, rng: np.random.Generator, sampling_rate: int, tail_energy: float = 0.5
) -> np.ndarray:
    """The clip through `room_response(rt60, ...)`, cut to its own length."""
    response = room_response(rt60, rng, sampling_rate, tail_energy)
    return fftconvolve(waveform, response)[: len(waveform)].astype(np.float32)


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"--{name} must lie in [0, 1], got {value!r}")


def _check_range(name: str, value, low: float, high: float) -> None:
    """A (min, max) pair inside the open interval (low, high), min <= max."""
    numbers = len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers or not all(math.isfinite(v) and low < v < high for v in value) or value[0] > value[1]:
        raise ValueError(
            f"--{name} must be two numbers MIN MAX with MIN <= MAX, each in ({low:g}, {high:g}), got {value!r}"
        )


@dataclass
class SpeechAugmentation:
    """Which degradations a training clip may get, each with its own probability (0 switches it off); the ranges
    are (min, max) pairs drawn uniformly."""

    noise_probability: float = 0.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    reverb_probability: float = 0.0
    rt60_seconds: tuple[float, float] = (0.1, 0.8)

    def __post_init__(self):
        _check_probability("noise_probability", self.noise_probability)
        _check_probability("reverb_probability", self.reverb_probability)
        _check_range("noise_snr_db", self.snr_db, -math.inf, math.inf)
        # Rooms ring for tenths of a second; a cathedral for a few seconds.
        _check_range("reverb_rt60_seconds", self.rt60_seconds, 0.0, 5.0)
        self.snr_db, self.rt60_seconds = tuple(self.snr_db), tuple(self.rt60_seconds)

    @property
    def active(self) -> bool:
        return self.noise_probability > 0 or self.reverb_probability > 0

    def __call__(self, waveform: np.ndarray, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
        """The clip, degraded by this draw of `rng`: reverberation first (the room), then noise (the microphone).
        Every choice is drawn whether or not it is used, so one degradation's setting never shifts the other's."""
        reverberate = rng.random() < self.reverb_probability
        rt60, tail_energy = rng.uniform(*self.rt60_seconds), rng.uniform(0.2, 0.8)
        noisy = rng.random() < self.noise_probability
        snr, exponent = rng.uniform(*self.snr_db), rng.uniform(0.0, 2.0)
        room_rng, noise_rng = rng.spawn(2)
        if reverberate:
            waveform = add_reverberation(waveform, rt60, room_rng, sampling_rate, tail_energy)
        if noisy:
            waveform = add_noise(waveform, snr, noise_rng, sampling_rate, exponent)
        return np.asarray(waveform, dtype=np.float32)


__all__ = ["SpeechAugmentation", "add_noise", "add_reverberation", "coloured_noise", "room_response"]
