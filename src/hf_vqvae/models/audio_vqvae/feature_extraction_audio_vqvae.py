"""The audio VQ-VAE's feature extractor: raw mono waveforms -> `input_values`, in transformers' conventions."""

import logging
import math

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers import FeatureExtractionMixin  # noqa: F401  diffusers finds a pipeline component's base class on its module

from ...input_checks import check_signal_values, is_integer
from .loudness import check_loudness_settings, normalize_loudness


logger = logging.getLogger(__name__)

# Full scale of integer PCM, so int16 / int32 / uint8 arrays become floats in [-1, 1].
PCM_FULL_SCALE = {np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31, np.dtype(np.int8): 2**7}


# ---------------------------------------------------------------------------------------------------- validation


def checked_positive_integer(name: str, value) -> int:
    """`value` as an int; ValueError naming `name` unless it is a positive whole number (a Python or numpy integer,
    or a float such as 16000.0; not a string or a bool)."""
    whole = is_integer(value) or (isinstance(value, float) and value.is_integer())
    if not whole or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    return int(value)


def checked_sampling_rate(sampling_rate) -> int:
    """The rate a caller gives with its audio, as an int; ValueError naming it unless it is a positive number of
    samples per second."""
    return checked_positive_integer("sampling_rate (samples per second, in Hz)", sampling_rate)


def check_float_samples(waveform: np.ndarray) -> None:
    """Refuse float audio holding NaN or Inf, or samples far outside [-1, 1] (16-bit PCM stored as floats); warn
    when samples a little beyond [-1, 1] are about to be clipped."""
    check_signal_values(
        "the audio's samples", waveform, kind="audio samples", likely_cause="16-bit PCM stored as floats",
        fix="divide 16-bit PCM by 32768, or pass the int16 array itself",
    )
    peak = float(np.abs(waveform).max())
    if peak > 1:
        logger.warning(
            "the audio's samples reach %.4g in magnitude: %d samples beyond [-1, 1] are clipped",
            peak, int((np.abs(waveform) > 1).sum()),
        )


def resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's `resample_poly`, anti-aliased) between integer rates."""
    from scipy.signal import resample_poly

    divisor = math.gcd(from_rate, to_rate)
    return resample_poly(waveform, to_rate // divisor, from_rate // divisor).astype(np.float32)


class AudioVQVAEFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns mono waveforms into the `input_values` of an [`AudioVQVAEModel`]: floats in [-1, 1] (integer PCM is
    scaled), at the model's sampling rate (other rates are refused unless `do_resample`), each clip cropped to
    `max_length` with `truncation=True` and padded with silence to the longest clip, rounded up to a whole number of
    latents (`hop_length` samples). Float samples holding NaN or Inf, or far beyond [-1, 1] (16-bit PCM stored as
    floats), are refused; samples a little beyond it are clipped with a warning. With `do_normalize_loudness`, each
    clip is then scaled to the gated level `loudness_target_db` (`loudness.normalize_loudness`), the level the model
    was trained at.

    Args:
        sampling_rate (`int`, defaults to 16000): the rate the model was trained at.
        hop_length (`int`, defaults to 64): samples per latent; lengths are padded to a multiple of it.
        segment_length (`int`, defaults to 16384): the training crop in samples, and `max_length` when
            `truncation=True` is asked without one.
        do_resample (`bool`, defaults to `False`): resample audio given at another rate instead of refusing it.
        do_normalize_loudness (`bool`, defaults to `True`): scale each clip to `loudness_target_db`. An extractor
            saved before this option existed loads with `False`, as it behaved.
        loudness_target_db (`float`, defaults to -20.0): the gated level in dBFS clips are scaled to.
        padding_value (`float`, defaults to 0.0): silence.
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        sampling_rate: int = 16000,
        hop_length: int = 64,
        segment_length: int = 16384,
        do_resample: bool = False,
        do_normalize_loudness: bool = True,
        loudness_target_db: float = -20.0,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        **kwargs,
    ):
        # Saved with the extractor, but fixed: one channel of raw samples.
        kwargs.pop("feature_size", None)
        sampling_rate = checked_positive_integer("AudioVQVAEFeatureExtractor.sampling_rate", sampling_rate)
        hop_length = checked_positive_integer("AudioVQVAEFeatureExtractor.hop_length", hop_length)
        segment_length = checked_positive_integer("AudioVQVAEFeatureExtractor.segment_length", segment_length)
        super().__init__(
            feature_size=1, sampling_rate=sampling_rate, padding_value=padding_value,
            return_attention_mask=return_attention_mask, **kwargs,
        )
        if segment_length < hop_length or segment_length % hop_length:
            raise ValueError(
                f"segment_length ({segment_length}) must be a positive multiple of hop_length ({hop_length})"
            )
        self.hop_length = hop_length
        self.segment_length = segment_length
        self.do_resample = do_resample
        check_loudness_settings(
            "AudioVQVAEFeatureExtractor", "do_normalize_loudness", do_normalize_loudness, loudness_target_db
        )
        self.do_normalize_loudness = do_normalize_loudness
        self.loudness_target_db = loudness_target_db

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict, **kwargs):
        # Extractors saved before loudness normalisation existed passed clips at their own level.
        feature_extractor_dict = {"do_normalize_loudness": False, **feature_extractor_dict}
        return super().from_dict(feature_extractor_dict, **kwargs)

    @classmethod
    def for_model(cls, config, **kwargs) -> "AudioVQVAEFeatureExtractor":
        """The feature extractor matching an `AudioVQVAEConfig` (rate, hop length, and the loudness normalisation
        the model was trained with)."""
        fields = dict(
            sampling_rate=config.sampling_rate, hop_length=config.hop_length,
            do_normalize_loudness=config.normalize_loudness, loudness_target_db=config.loudness_target_db,
        )
        return cls(**{**fields, **kwargs})

    def mono_waveform(self, audio, sampling_rate: int | None = None, do_resample: bool | None = None) -> np.ndarray:
        """One clip as a float32 mono waveform in [-1, 1] at the extractor's rate; raises ValueError on several
        channels, an empty clip, or another rate without resampling."""
        waveform = np.asarray(audio)
        if waveform.ndim == 2 and 1 in waveform.shape:
            waveform = waveform.reshape(-1)
        if waveform.ndim != 1:
            raise ValueError(
                f"expected mono audio, a 1-D waveform, got an array of shape {waveform.shape}; for stereo or "
                "multi-channel audio average the channels first (e.g. audio.mean(axis=0))"
            )
        if waveform.size == 0:
            raise ValueError("got an empty audio clip (0 samples)")
        if waveform.dtype in PCM_FULL_SCALE:
            waveform = waveform.astype(np.float32) / PCM_FULL_SCALE[waveform.dtype]
        elif waveform.dtype == np.uint8:
            waveform = (waveform.astype(np.float32) - 128) / 128
        elif np.issubdtype(waveform.dtype, np.floating):
            check_float_samples(waveform)
        else:
            raise ValueError(f"audio must hold floats in [-1, 1] or integer PCM, got dtype {waveform.dtype}")
        waveform = waveform.astype(np.float32)
        if sampling_rate is None:
            logger.warning(
                "no sampling_rate given to AudioVQVAEFeatureExtractor: assuming %s Hz; pass sampling_rate to have "
                "it checked", self.sampling_rate,
            )
            sampling_rate = self.sampling_rate
        sampling_rate = checked_sampling_rate(sampling_rate)
        if sampling_rate != self.sampling_rate:
            if not (self.do_resample if do_resample is None else do_resample):
                raise ValueError(
                    f"the audio's sampling rate is {sampling_rate} Hz but the model expects {self.sampling_rate} Hz; "
                    "resample it, or pass do_resample=True to let the feature extractor do it"
                )
            waveform = resample(waveform, sampling_rate, self.sampling_rate)
        # Resampling rings a little beyond [-1, 1] near full-scale samples.
        return np.clip(waveform, -1.0, 1.0)

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        do_resample: bool | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            raw_audio: one waveform (1-D array or list of floats) or a list of them.
            sampling_rate: their rate in Hz; checked against the model's.
            do_resample: overrides the extractor's `do_resample` for this call.
            padding: `"longest"` (default), `"max_length"` or `False` (one clip, or clips of equal length).
            max_length, truncation: with `truncation=True` clips are cropped to `max_length` (default
                `segment_length`), rounded up to a multiple of `hop_length`.
            return_tensors: `"pt"`, `"np"` or None (lists).
        """
        if isinstance(raw_audio, np.ndarray) and raw_audio.ndim == 1:
            clips = [raw_audio]
        elif isinstance(raw_audio, (list, tuple)) and raw_audio and np.ndim(raw_audio[0]) == 0:
            clips = [np.asarray(raw_audio)]
        elif isinstance(raw_audio, (list, tuple)):
            clips = list(raw_audio)
        else:
            clips = [raw_audio]
        if not clips:
            raise ValueError("got no audio clip")
        waveforms = [self.mono_waveform(clip, sampling_rate, do_resample) for clip in clips]
        if self.do_normalize_loudness:
            waveforms = [normalize_loudness(waveform, self.sampling_rate, self.loudness_target_db)[0] for waveform in waveforms]
        for waveform in waveforms:
            if len(waveform) < self.hop_length:
                raise ValueError(
                    f"an audio clip has {len(waveform)} samples, shorter than one latent ({self.hop_length} samples "
                    f"at {self.sampling_rate} Hz)"
                )
        if truncation and max_length is None:
            max_length = self.segment_length
        return self.pad(
            BatchFeature({"input_values": waveforms}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=self.hop_length,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )


__all__ = ["AudioVQVAEFeatureExtractor"]
