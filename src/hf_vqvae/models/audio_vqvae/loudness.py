"""Loudness normalisation of speech clips: each clip is scaled so that its gated level (the RMS of its active
blocks, in dB relative to full scale) reaches a target, as the audio VQ-VAE's encoder sees level as content.

The level is measured as ITU-R BS.1770 / EBU R128 measure loudness, without the K-weighting filter: the clip is cut
into 100 ms blocks (75% overlap; a clip shorter than a block is one block), blocks below -70 dBFS are dropped (the
absolute gate: digital silence), then blocks more than 10 dB below the mean power of the rest (the relative gate:
pauses, breaths, the noise between words). So a clip's level is that of its speech, whatever its pauses.
"""

import numpy as np


BLOCK_SECONDS = 0.1
BLOCK_OVERLAP = 0.75
ABSOLUTE_GATE_DB = -70.0
RELATIVE_GATE_DB = -10.0
# Below this a clip holds no speech to measure: it is left as it is rather than amplified.
SILENCE_DB = ABSOLUTE_GATE_DB
# The targets a model or feature extractor may ask for, in dBFS.
TARGET_RANGE_DB = (-60.0, -3.0)


def check_loudness_settings(owner: str, switch_name: str, switch, target_db) -> None:
    """Raise a `ValueError` naming the field of `owner` (e.g. "AudioVQVAEConfig") unless the switch `switch_name` is
    a bool and `target_db` a level in dBFS within `TARGET_RANGE_DB`."""
    if not isinstance(switch, bool):
        raise ValueError(f"{owner}.{switch_name} must be true or false, got {switch!r}")
    low, high = TARGET_RANGE_DB
    if isinstance(target_db, bool) or not isinstance(target_db, (int, float)) or not low <= target_db <= high:
        raise ValueError(
            f"{owner}.loudness_target_db must be a level in dBFS between {low:g} and {high:g}, got {target_db!r}"
        )


def _power_db(power) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, 1e-20))


def gated_level_db(waveform: np.ndarray, sampling_rate: int) -> float:
    """The clip's gated level in dBFS (a full-scale sine wave is -3 dB); -inf for a silent clip."""
    waveform = np.asarray(waveform, dtype=np.float64).reshape(-1)
    block = max(1, min(len(waveform), round(BLOCK_SECONDS * sampling_rate)))
    step = max(1, round(block * (1 - BLOCK_OVERLAP)))
    squares = np.concatenate([[0.0], np.cumsum(waveform**2)])
    starts = np.arange(0, len(waveform) - block + 1, step)
    powers = (squares[starts + block] - squares[starts]) / block
    powers = powers[_power_db(powers) > ABSOLUTE_GATE_DB]
    if len(powers) == 0:
        return -np.inf
    powers = powers[_power_db(powers) > _power_db(powers.mean()) + RELATIVE_GATE_DB]
    return float(_power_db(powers.mean()))


def loudness_gain(waveform: np.ndarray, sampling_rate: int, target_db: float) -> float:
    """The factor that brings the clip's gated level to `target_db`, lowered if need be so that its peak stays
    within full scale (no clipping); 1 for a clip with no level to measure (silence)."""
    level = gated_level_db(waveform, sampling_rate)
    if level <= SILENCE_DB:
        return 1.0
    gain = 10 ** ((target_db - level) / 20)
    peak = float(np.abs(waveform).max())
    return min(gain, 1.0 / peak) if peak > 0 else gain


def normalize_loudness(waveform: np.ndarray, sampling_rate: int, target_db: float) -> tuple[np.ndarray, float]:
    """The clip scaled to the gated level `target_db` (see `loudness_gain`), float32, and the gain applied: divide
    a waveform by it to bring it back to the clip's own level."""
    gain = loudness_gain(waveform, sampling_rate, target_db)
    return (np.asarray(waveform, dtype=np.float32) * np.float32(gain)), gain


__all__ = ["check_loudness_settings", "gated_level_db", "loudness_gain", "normalize_loudness"]
