"""The audio VQ-VAE's training recipe (`train_audio_vqvae`, behind scripts/train_audio.py): its settings, config,
speech data, validation (teacher-forced bits per sample, code usage, a reconstruction and a speaker conversion as
audio and spectrograms) and final files."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
import torch
from accelerate import Accelerator

from ...argument_checks import check_at_least
from ...data.audio_files import wav_bytes
from ...data.speech import SpeechDataArguments, load_speech_datasets, speech_dataloader, validation_clips
from ...models.audio_vqvae.configuration_audio_vqvae import AUDIO_PRESETS, AudioVQVAEConfig
from ...models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ...models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..arguments import HubArguments, OptimizationArguments, OutputArguments, parse_arguments
from ..autoencoders import base_config_fields, parse_config_overrides, vqvae_train_logs
from ..code_usage import CodeUsageWatch
from ..loop import train
from ..publishing import four_figures, publish_model
from ..recipe import Recipe, TrainingRun
from ..spectrograms import spectrogram_figure
from ..tracking import log_audio, log_image


@dataclass
class AudioModelArguments:
    """Which audio VQ-VAE is trained: a preset of the paper's, a saved config, field overrides. The speakers come
    from the data."""

    _argument_group_name = "model"

    preset: str | None = field(
        default=None, metadata={"help": "Start from the paper's setting.", "choices": sorted(AUDIO_PRESETS)}
    )
    model_config_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a config: a config.json, a folder holding one, or a Hub model id."}
    )
    downsampling_strides: list[int] | None = field(
        default=None, metadata={"help": "The encoder's strides, e.g. 2 2 2 2 2 2 (64 samples per code, the paper's)."}
    )
    config_overrides: list[str] = field(
        default_factory=list,
        metadata={"help": "Override config fields, e.g. num_layers=10 num_embeddings=256.", "metavar": "FIELD=VALUE"},
    )

    def __post_init__(self):
        if self.preset and self.model_config_name_or_path:
            raise ValueError("pass either --preset or --model_config_name_or_path, not both")
        if self.preset is not None and self.preset not in AUDIO_PRESETS:
            raise ValueError(f"--preset must be one of {sorted(AUDIO_PRESETS)}, got {self.preset!r}")
        parse_config_overrides(self.config_overrides, AudioVQVAEConfig)


@dataclass
class AudioSampleArguments:
    """The audio a validation writes: a reconstruction and a speaker conversion of a held-out clip."""

    _argument_group_name = "audio samples"

    audio_sample_seconds: float = field(
        default=0.5,
        metadata={"help": "Length of the generated validation samples (cached sample-by-sample decoding), at most one "
                          "validation clip's: --segment_length samples (0.256 s at the default 4096 and 16 kHz)."},
    )

    def __post_init__(self):
        check_at_least(self, "audio_sample_seconds", 0.001)


@dataclass
class AudioVQVAETrainingArguments:
    """Everything `train_audio_vqvae` needs, in groups: what `scripts/train_audio.py` parses from its flags or a
    file.

    Example (a notebook, no command line):

        train_audio_vqvae(AudioVQVAETrainingArguments(
            data=SpeechDataArguments(dataset_name="outputs/flite-speech"),
            optimization=OptimizationArguments(max_train_steps=2000, learning_rate=1e-3, train_batch_size=8),
        ))
    """

    data: SpeechDataArguments = field(default_factory=SpeechDataArguments)
    model: AudioModelArguments = field(default_factory=AudioModelArguments)
    samples: AudioSampleArguments = field(default_factory=AudioSampleArguments)
    # About 27 updates an epoch on the default set; the WaveNet trains well at 1e-3 with small batches.
    optimization: OptimizationArguments = field(
        default_factory=lambda: OptimizationArguments(num_train_epochs=20, train_batch_size=8, learning_rate=1e-3)
    )
    output: OutputArguments = field(default_factory=lambda: OutputArguments(output_dir="outputs/audio-vqvae"))
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> AudioVQVAETrainingArguments:
    """The settings of `scripts/train_audio.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        AudioVQVAETrainingArguments, argv,
        description="Train an audio VQ-VAE with a WaveNet decoder (van den Oord et al. 2017, section 4.3).",
    )


def build_audio_config(
    model: AudioModelArguments, speaker_names: list[str] | None, segment_length: int, cache_dir: str | None = None
) -> AudioVQVAEConfig:
    """The model config from --preset or --model_config_name_or_path (else the defaults), the strides and
    overrides, and the data's speakers; checks that --segment_length fits the model."""
    fields = base_config_fields(
        AudioVQVAEConfig, model.preset, model.model_config_name_or_path, model.config_overrides, cache_dir=cache_dir
    )
    if model.downsampling_strides:
        fields["downsampling_strides"] = list(model.downsampling_strides)
    fields["num_speakers"] = len(speaker_names) if speaker_names else 0
    fields["speaker_names"] = list(speaker_names) if speaker_names else None
    config = AudioVQVAEConfig(**fields)
    hop = config.hop_length
    if segment_length % hop:
        raise ValueError(
            f"--segment_length {segment_length} is not a multiple of the model's hop length {hop} (the product of "
            f"the strides); use e.g. {max(1, segment_length // hop) * hop} or {(segment_length // hop + 1) * hop}"
        )
    if segment_length < config.receptive_field:
        raise ValueError(
            f"--segment_length {segment_length} is shorter than the decoder's receptive field "
            f"({config.receptive_field} samples): most outputs would train without their full context; use at "
            f"least {math.ceil(config.receptive_field / hop) * hop}"
        )
    return config


# ------------------------------------------------------------------------------------------------- validation


@torch.no_grad()
def evaluate_speech(model: AudioVQVAEModel, clips: torch.Tensor, speakers: torch.Tensor | None, batch_size: int) -> dict:
    """Teacher-forced cross-entropy of the validation clips in bits per sample, code perplexity and usage, and the
    control that tells whether the decoder reads its codes: the bits of each clip given another clip's codes (half
    the set away; same speaker id, same decoder) and the share of clips whose own codes cost fewer bits."""
    was_training = model.training
    model.eval()
    batches = [slice(start, start + batch_size) for start in range(0, len(clips), batch_size)]
    speakers_of = [speakers[batch] if speakers is not None else None for batch in batches]
    codes = torch.cat([model.encode(clips[batch].to(model.device)).indices.cpu() for batch in batches])
    other_codes = codes.roll(len(clips) // 2, dims=0)
    own = torch.cat([model.teacher_forced_bits(clips[b], s, codes[b]).cpu() for b, s in zip(batches, speakers_of)])
    other = torch.cat([model.teacher_forced_bits(clips[b], s, other_codes[b]).cpu() for b, s in zip(batches, speakers_of)])
    model.train(was_training)
    code_counts = torch.bincount(codes.flatten(), minlength=model.config.num_embeddings).double()
    probabilities = code_counts / code_counts.sum()
    entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum()
    metrics = {
        "bits_per_sample": float(own.mean()),
        "perplexity": float(entropy.exp()),
        "codes_used": int((code_counts > 0).sum()),
    }
    if len(clips) > 1:
        metrics["bits_per_sample_given_other_codes"] = float(other.mean())
        metrics["own_codes_win"] = float((own < other).float().mean())
    return metrics


@torch.no_grad()
def audio_samples(
    model: AudioVQVAEModel, clips: torch.Tensor, speakers: torch.Tensor | None, seconds: float, seed: int
) -> dict[str, torch.Tensor]:
    """A held-out clip, its reconstruction (its own speaker) and, with several speakers, its conversion to the next
    speaker; drawn from a generator of their own so that validating never moves the training's random state. Runs in
    evaluation mode: in training mode the quantizer would update its codebook (and wait for the other processes)."""
    was_training = model.training
    model.eval()
    hop = model.config.hop_length
    length = min(clips.shape[1], max(hop, round(seconds * model.config.sampling_rate) // hop * hop))
    original = clips[:1, :length].to(model.device)
    codes = model.encode(original).indices
    source = speakers[:1] if speakers is not None else None
    samples = {"original": original[0]}
    generator = torch.Generator(device=model.device).manual_seed(seed)
    samples["reconstruction"] = model.decode(codes, source, generator=generator).audio_values[0]
    if model.config.num_speakers > 1:
        target = (source + 1) % model.config.num_speakers
        samples["conversion"] = model.decode(codes, target, generator=generator).audio_values[0]
    model.train(was_training)
    return samples


def validate_and_log(
    accelerator: Accelerator, model: AudioVQVAEModel, clips, speakers, step: int, batch_size: int,
    samples: AudioSampleArguments, seed: int,
) -> tuple[dict, dict[str, torch.Tensor], PIL.Image.Image]:
    """Validation figures, audio samples and their spectrograms, sent to the trackers (main process only)."""
    metrics = evaluate_speech(model, clips, speakers, batch_size)
    accelerator.log({f"validation/{name}": value for name, value in metrics.items()}, step=step)
    accelerator.log({"train/codes_used": model.quantizer.distinct_codes_used}, step=step)
    waveforms = audio_samples(model, clips, speakers, samples.audio_sample_seconds, seed)
    rate = model.config.sampling_rate
    for name, waveform in waveforms.items():
        log_audio(accelerator, f"validation/{name}", waveform, rate, step)
    figure = spectrogram_figure(waveforms, rate, title=f"step {step}")
    log_image(accelerator, "validation/spectrograms", figure, step)
    return metrics, waveforms, figure


# ------------------------------------------------------------------------------------------------- the recipe

# What the training log suggests when code usage collapses (`code_usage.CodeUsageWatch`); the causes measured on
# speech are in docs/audio.md.
COLLAPSE_HINT = (
    "Causes seen on speech: clips far quieter or louder than the encoder was trained on (keep normalize_loudness=true), "
    "a quantizer that follows the encoder too slowly (decay=0.9 restarts dead codes within ~10 updates; 0.99 takes "
    "~70), or a model from hf-vqvae 0.2.0 whose encoder starts with bias-dominated latents."
)


class AudioVQVAERecipe(Recipe):
    """An `AudioVQVAEModel` on speech (`data.speech`): teacher-forced WaveNet loss, codebook and commitment terms."""

    project_name = "hf-vqvae-audio"
    examples = "audio clips"

    def build_model(self, accelerator: Accelerator) -> AudioVQVAEModel:
        data = self.arguments.data
        # The main process synthesises or loads the data first; the others then read the caches.
        with accelerator.main_process_first():
            self.datasets = load_speech_datasets(data, seed=self.arguments.optimization.seed)
        self.config = build_audio_config(
            self.arguments.model, self.datasets.speaker_names, data.segment_length, cache_dir=data.cache_dir
        )
        return AudioVQVAEModel(self.config)

    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        data, optimization = self.arguments.data, self.arguments.optimization
        self.feature_extractor = AudioVQVAEFeatureExtractor.for_model(self.config, segment_length=data.segment_length)
        self.usage = CodeUsageWatch(self.config.num_embeddings, COLLAPSE_HINT, enabled=accelerator.is_main_process)
        self.num_processes = accelerator.num_processes
        # Whole clips are scaled to the level the feature extractor will scale the model's inputs to, then cropped.
        loudness_target_db = self.config.loudness_target_db if self.config.normalize_loudness else None
        with accelerator.main_process_first():
            train_dataloader = speech_dataloader(
                self.datasets,
                segment_length=data.segment_length,
                batch_size=optimization.train_batch_size,
                seed=optimization.seed,
                sampling_rate=self.config.sampling_rate,
                num_workers=data.dataloader_num_workers,
                max_unreadable_fraction=data.max_unreadable_fraction,
                process_index=accelerator.process_index,
                num_processes=accelerator.num_processes,
                loudness_target_db=loudness_target_db,
                augmentation=data.augmentation,
            )
            self.clips, self.speakers = validation_clips(
                self.datasets, data.segment_length, data.max_validation_samples, self.config.sampling_rate,
                data.max_unreadable_fraction, loudness_target_db,
            )
        return train_dataloader

    def forward(self, model: AudioVQVAEModel, batch: dict):
        return model(batch["input_values"], batch.get("speaker_ids"))

    def train_logs(self, output) -> dict[str, float]:
        logs = vqvae_train_logs(output)
        self.usage.update(logs["train/perplexity"], output.indices.numel() * self.num_processes)
        return logs

    def log_validation(self, accelerator: Accelerator, model: AudioVQVAEModel, step: int):
        optimization = self.arguments.optimization
        return validate_and_log(
            accelerator, model, self.clips, self.speakers, step, optimization.train_batch_size, self.arguments.samples,
            optimization.seed,
        )

    def validate(self, accelerator: Accelerator, model: AudioVQVAEModel, step: int) -> None:
        if accelerator.is_main_process:
            self.log_validation(accelerator, model, step)
        # Every process starts a new usage window, so the buffers stay identical.
        model.quantizer.reset_usage()

    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """Validate, then write the model, the feature extractor, `metrics.json`, the audio samples (`samples/*.wav`)
        and their spectrograms (`spectrograms.png`) and a model card embedding them into --output_dir; push them when
        asked."""
        model, step = run.model, run.position.step
        results, waveforms, figure = self.log_validation(accelerator, model, step)
        metrics = {f"validation_{name}": four_figures(value) for name, value in results.items()}
        metrics |= {
            "bits_per_second_of_codes": four_figures(model.config.bits_per_second),
            "train_steps": step,
            "validation_clips": len(self.clips),
        }
        rate = model.config.sampling_rate

        def save_extra(folder: Path) -> None:
            self.feature_extractor.save_pretrained(folder)
            (folder / "samples").mkdir(exist_ok=True)
            for name, waveform in waveforms.items():
                (folder / "samples" / f"{name}.wav").write_bytes(wav_bytes(waveform.cpu().numpy(), rate))

        audio_path = "samples/conversion.wav" if "conversion" in waveforms else "samples/reconstruction.wav"
        publish_model(
            run, self.arguments.output, self.arguments.hub, training, metrics=metrics, image=figure,
            image_name="spectrograms.png", dataset_name=self.datasets.name, description="Audio VQ-VAE",
            save_extra=save_extra, card_fields={"audio_path": audio_path},
        )
        return metrics


def train_audio_vqvae(arguments: AudioVQVAETrainingArguments) -> dict:
    """Train an `AudioVQVAEModel` as `arguments` say (`parse_args` reads them from flags or a file); returns the
    final validation metrics (also written to `<output_dir>/metrics.json`)."""
    return train(AudioVQVAERecipe(arguments))


__all__ = [
    "AudioModelArguments",
    "AudioSampleArguments",
    "AudioVQVAETrainingArguments",
    "parse_args",
    "train_audio_vqvae",
]
