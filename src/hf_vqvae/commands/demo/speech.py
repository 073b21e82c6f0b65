"""What the demo's speech tab computes with an `AudioVQVAEPipeline`: recorded or uploaded audio reconstructed in its
speaker's voice and converted to another speaker's, and, when the pipeline has a prior, new speech. Audio comes and
goes as Gradio's numpy audio does: `(sampling rate, samples)`, the samples integer PCM or floats, mono or
(samples, channels)."""

import numpy as np
import torch

from ...models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor


# The WaveNet decoder draws one sample at a time: on a CPU a few seconds of audio take a while, so longer clips are cut.
DEFAULT_MAX_SECONDS = 3.0


def speaker_names(pipeline) -> list[str]:
    """The speakers the pipeline's VQ-VAE speaks in, by name where its config names them; [] for a model of one voice."""
    config = pipeline.vqvae.config
    return [str(name) for name in (config.speaker_names or range(config.num_speakers))]


def speaker_id(pipeline, name: str | None) -> int | None:
    """The id of the speaker `name` (one of `speaker_names`); None for a model without speakers."""
    names = speaker_names(pipeline)
    if not names:
        return None
    if name not in names:
        raise ValueError(f"pick a speaker: one of {names}, got {name!r}")
    return names.index(name)


def input_values(pipeline, audio: tuple[int, np.ndarray] | None, max_seconds: float = DEFAULT_MAX_SECONDS) -> torch.Tensor:
    """Gradio's `(rate, samples)` as the VQ-VAE's (1, samples) input values: channels averaged, cut to `max_seconds`,
    resampled to the model's rate."""
    if audio is None:
        raise ValueError("record or upload a clip first")
    rate, samples = audio
    samples = np.asarray(samples)
    if samples.ndim == 2:  # (samples, channels): average the channels in floats, scaled as the extractor scales PCM
        samples = samples.astype(np.float32) / (np.iinfo(samples.dtype).max + 1 if samples.dtype.kind == "i" else 1)
        samples = samples.mean(axis=1)
    samples = samples[: int(max_seconds * rate)]
    feature_extractor = AudioVQVAEFeatureExtractor.for_model(pipeline.vqvae.config, do_resample=True)
    return feature_extractor(samples, sampling_rate=int(rate), return_tensors="pt")["input_values"]


def reconstruct_and_convert(
    pipeline, audio, source: str | None, target: str | None, seed: int, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[tuple[int, np.ndarray], tuple[int, np.ndarray] | None]:
    """The clip decoded from its codes in the voice of `source` (its reconstruction), and in the voice of `target`
    (its conversion; None for a model without speakers)."""
    values = input_values(pipeline, audio, max_seconds)
    rate = pipeline.vqvae.config.sampling_rate
    reconstruction = _decoded(pipeline, values, speaker_id(pipeline, source), seed)
    conversion = None
    if speaker_names(pipeline):
        conversion = (rate, _decoded(pipeline, values, speaker_id(pipeline, target), seed))
    return (rate, reconstruction), conversion


def generate(pipeline, speaker: str | None, seed: int, temperature: float) -> tuple[int, np.ndarray]:
    """New speech from the pipeline's prior, in the voice of `speaker`."""
    generator = torch.Generator(device=pipeline.device).manual_seed(int(seed))
    audios = pipeline(
        batch_size=1, speaker=speaker_id(pipeline, speaker), temperature=float(temperature), generator=generator
    ).audios
    return pipeline.vqvae.config.sampling_rate, audios[0]


def _decoded(pipeline, values: torch.Tensor, speaker: int | None, seed: int) -> np.ndarray:
    generator = torch.Generator(device=pipeline.device).manual_seed(int(seed))
    return pipeline(audio=values, speaker=speaker, generator=generator).audios[0]
