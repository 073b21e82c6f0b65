"""Audio files as waveforms and back: decoding what a data set stores into a mono float waveform at a given rate
(`decode_audio`), and a waveform as the bytes of a WAV file (`wav_bytes`).

Audio is decoded here with `soundfile` (the `.[audio]` extra) rather than by `datasets`, whose `Audio` decoding needs
torchcodec and FFmpeg; WAV files decode with the standard library when soundfile is missing.
"""

import io
import os
import wave

import numpy as np
import torch

from ..models.audio_vqvae.feature_extraction_audio_vqvae import resample
from ..models.audio_vqvae.loudness import normalize_loudness


SAMPLING_RATE = 16000

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


class UnreadableAudioError(ValueError):
    """An audio file that cannot be decoded (corrupt, truncated, not audio)."""


def decode_audio(value, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """A float32 mono waveform at `sampling_rate` from what a data set stores: `Audio(decode=False)`'s
    `{"bytes", "path"}`, `{"array", "sampling_rate"}`, raw bytes or a file path. Several channels are averaged;
    other rates are resampled. Raises `UnreadableAudioError` on anything that does not decode, and on NaN or infinite
    samples, so a training run counts such a clip with the unreadable ones."""
    try:
        if isinstance(value, dict) and value.get("array") is not None:
            waveform, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        else:
            if isinstance(value, dict):
                source = value.get("bytes") or value.get("path")
            else:
                source = value
            if source is None:
                raise ValueError("neither bytes nor a path")
            waveform, rate = _read_audio_file(io.BytesIO(source) if isinstance(source, bytes) else source)
        if waveform.ndim == 2:
            waveform = waveform.mean(axis=1)
        if waveform.size == 0:
            raise ValueError("the clip is empty")
        non_finite = int(np.count_nonzero(~np.isfinite(waveform)))
        if non_finite:
            # A float WAV can hold them; training on them would turn the loss into NaN.
            raise ValueError(f"{non_finite} of its {waveform.size} samples are NaN or infinite")
        if rate != sampling_rate:
            waveform = resample(waveform, rate, sampling_rate)
        return np.clip(waveform.astype(np.float32), -1.0, 1.0)
    except (OSError, ValueError, RuntimeError, TypeError, EOFError, wave.Error) as error:
        raise UnreadableAudioError(f"cannot decode audio {_describe(value)}: {error}") from error


def decode_for_model(value, sampling_rate: int, loudness_target_db: float | None) -> np.ndarray:
    """`decode_audio`, then the whole clip scaled to the gated level `loudness_target_db` (dBFS) as the audio
    VQ-VAE's feature extractor scales it (None: the clip's own level)."""
    waveform = decode_audio(value, sampling_rate)
    if loudness_target_db is None:
        return waveform
    return normalize_loudness(waveform, sampling_rate, loudness_target_db)[0]


def _read_audio_file(source) -> tuple[np.ndarray, int]:
    """(samples, channels-last if several) and the rate, with soundfile, else WAV with the standard library."""
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is not None:
        waveform, rate = soundfile.read(source, dtype="float32", always_2d=False)
        return waveform, rate
    try:
        with wave.open(source if not isinstance(source, os.PathLike) else str(source)) as reader:
            width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except wave.Error as error:
        raise ValueError(f"{error}; only WAV decodes without soundfile: pip install 'hf-vqvae[audio]'") from error
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise ValueError(f"{8 * width}-bit WAV needs soundfile: pip install 'hf-vqvae[audio]'")
    samples = np.frombuffer(frames, dtype=dtype).astype(np.float32)
    samples = (samples - 128) / 128 if width == 1 else samples / float(2 ** (8 * width - 1))
    return samples.reshape(-1, channels) if channels > 1 else samples, rate


def _describe(value) -> str:
    if isinstance(value, dict) and value.get("path"):
        return repr(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return repr(str(value))
    return f"of type {type(value).__name__}"


def wav_bytes(waveform: np.ndarray | torch.Tensor, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """A mono waveform (floats in [-1, 1]) as the bytes of a 16-bit PCM WAV file."""
    samples = np.clip(np.asarray(waveform, dtype=np.float32).reshape(-1), -1.0, 1.0)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sampling_rate)
        writer.writeframes(np.round(samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
