"""The audio VQ-VAE of van den Oord et al. 2017 (section 4.3) as a transformers model: strided 1-D convolutions
encode raw speech into one latent per `hop_length` samples, the shared `VectorQuantizer` quantizes them, and a
WaveNet (`layers.wavenet`) conditioned on the upsampled latents and a speaker embedding models the waveform as a
mu-law categorical. The latents carry the content and the decoder the voice: decoding speaker A's codes with
speaker B's id converts the voice."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.utils import ModelOutput

from .model_card_audio_vqvae import audio_vqvae_model_card
from ...input_checks import check_ids_in_range, check_not_empty, check_signal_values, is_integer, is_integer_tensor
from ...layers.sampling import check_temperature
from ...layers.wavenet import WaveNet
from ...modeling_utils import HubPreTrainedModel
from ...quantization.factory import build_quantizer
from .configuration_audio_vqvae import AudioVQVAEConfig
from .mu_law import mu_law_decode, mu_law_encode


@dataclass
class AudioVQVAEOutput(ModelOutput):
    """
    Args:
        loss: reconstruction_loss + codebook_loss + commitment_cost * commitment_loss.
        logits: the decoder's mu-law logits, (B, mu_law_channels, T), teacher-forced on the input.
        reconstruction_loss: cross-entropy of the input's mu-law samples, nats per sample.
        codebook_loss: ||sg[z_e] - e||^2; zero under the EMA update rule.
        commitment_loss: ||z_e - sg[e]||^2, before multiplying by beta.
        perplexity: exp(entropy) of the codes used in this batch.
        indices: the codes, (B, T / hop_length).
        encoder_hidden_states: with `output_hidden_states`, the encoder's activations: after each strided
            convolution, and z_e last.
        decoder_hidden_states: with `output_hidden_states`, the WaveNet's: its input (the embedded previous samples)
            and each block's residual output, (B, residual_channels, T).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AudioVQVAEEncoderOutput(ModelOutput):
    """
    Args:
        latents: z_e, the encoder output before quantization, (B, D, L).
        quantized: z_q, the nearest codebook vectors, (B, D, L).
        indices: the codes, (B, L).
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None


@dataclass
class AudioVQVAEDecoderOutput(ModelOutput):
    """
    Args:
        audio_values: the generated waveform, (B, L * hop_length), floats in [-1, 1].
        mu_law_samples: the same waveform as mu-law levels, (B, L * hop_length).
    """

    audio_values: torch.FloatTensor | None = None
    mu_law_samples: torch.LongTensor | None = None


class AudioEncoder(nn.Module):
    """One strided convolution (window twice the stride, so stride 2 has the paper's window 4) and a ReLU per
    stride, then a 1x1 projection to D: (B, 1, T) -> (B, D, T / hop_length)."""

    def __init__(self, config: AudioVQVAEConfig):
        super().__init__()
        self.strides = list(config.downsampling_strides)
        channels = [1] + [config.hidden_channels] * len(self.strides)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[index], channels[index + 1], kernel_size=2 * stride, stride=stride)
            for index, stride in enumerate(self.strides)
        )
        self.project_to_codes = nn.Conv1d(config.hidden_channels, config.embedding_dim, 1)

    def forward(self, waveform: torch.Tensor, hidden_states: list | None = None) -> torch.Tensor:
        """z_e; each activation is appended to `hidden_states` when a list is given."""
        hidden = waveform
        for conv, stride in zip(self.convs, self.strides):
            # stride // 2 samples on the left and the rest on the right: exactly length / stride outputs.
            hidden = F.relu(conv(F.pad(hidden, (stride // 2, stride - stride // 2))))
            if hidden_states is not None:
                hidden_states.append(hidden)
        latents = self.project_to_codes(hidden)
        if hidden_states is not None:
            hidden_states.append(latents)
        return latents


class AudioDecoder(nn.Module):
    """The WaveNet, conditioned on the latents (after a non-causal convolution over neighbouring latents, upsampled
    by repetition inside the WaveNet) and on a learned speaker embedding."""

    def __init__(self, config: AudioVQVAEConfig):
        super().__init__()
        self.latent_conditioning = nn.Conv1d(config.embedding_dim, config.conditioning_channels, 3, padding=1)
        self.speaker_embedding = (
            nn.Embedding(config.num_speakers, config.speaker_embedding_dim) if config.num_speakers else None
        )
        self.wavenet = WaveNet(
            num_classes=config.mu_law_channels,
            residual_channels=config.residual_channels,
            gate_channels=config.gate_channels,
            skip_channels=config.skip_channels,
            num_layers=config.num_layers,
            dilation_cycle=config.dilation_cycle,
            kernel_size=config.kernel_size,
            conditioning_channels=config.conditioning_channels,
            conditioning_hop=config.hop_length,
            global_channels=config.speaker_embedding_dim if config.num_speakers else 0,
        )

    def conditioning(self, quantized: torch.Tensor, speaker_ids: torch.Tensor | None) -> tuple:
        local = F.relu(self.latent_conditioning(quantized))
        speaker = self.speaker_embedding(speaker_ids) if self.speaker_embedding is not None else None
        return local, speaker

    def forward(
        self,
        mu_law_samples: torch.LongTensor | None,
        quantized: torch.Tensor,
        speaker_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None = None,
        hidden_states: list | None = None,
    ) -> torch.Tensor:
        local, speaker = self.conditioning(quantized, speaker_ids)
        return self.wavenet(mu_law_samples, local, speaker, inputs_embeds=inputs_embeds, hidden_states=hidden_states)


class AudioVQVAEPreTrainedModel(HubPreTrainedModel):
    config_class = AudioVQVAEConfig
    base_model_prefix = "audio_vqvae"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    # Nearest-neighbour search and EMA statistics stay fp32 when loading with dtype=bf16/fp16.
    _keep_in_fp32_modules_strict = ["quantizer"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        encoder = getattr(self, "encoder", None)
        if isinstance(encoder, AudioEncoder) and any(module is conv for conv in (*encoder.convs, encoder.project_to_codes)):
            # PyTorch's default (uniform weights of variance 1 / (3 fan_in), uniform biases) shrinks the signal at
            # each ReLU layer, so the latents of speech at -20 dBFS start as one bias vector (norm ~0.4) spread by
            # only ~0.004: a single Adam update of the biases moves them all past the k-means codebook onto one or two
            # codes, and the decoder learns to ignore its codes (docs/audio.md). He initialisation with zero biases
            # keeps the input's scale through the ReLUs, so the latents start spread out by what was said.
            linear = module is encoder.project_to_codes
            init.kaiming_normal_(module.weight, nonlinearity="linear" if linear else "relu")
            init.zeros_(module.bias)


class AudioVQVAEModel(AudioVQVAEPreTrainedModel):
    """Audio VQ-VAE: strided 1-D encoder -> vector quantizer -> speaker-conditioned WaveNet decoder.

    Input values are mono waveforms, floats in [-1, 1] of shape (B, T) with T a multiple of `config.hop_length`
    (the [`AudioVQVAEFeatureExtractor`] makes them). Speakers are ids in [0, num_speakers) or names from
    `config.speaker_names`.

    Example:

    ```python
    >>> import torch
    >>> from hf_vqvae import AudioVQVAEConfig, AudioVQVAEModel
    >>> config = AudioVQVAEConfig(
    ...     hidden_channels=16, downsampling_strides=[2, 2], num_embeddings=16, embedding_dim=4, residual_channels=8,
    ...     gate_channels=8, skip_channels=8, num_layers=4, dilation_cycle=2, conditioning_channels=4,
    ...     num_speakers=2, speaker_names=["ann", "bob"],
    ... )
    >>> model = AudioVQVAEModel(config)
    >>> audio = torch.rand(1, 64) * 2 - 1
    >>> model(audio, speaker_ids=torch.tensor([0])).indices.shape
    torch.Size([1, 16])
    >>> model.convert(audio, target_speaker="bob", generator=torch.Generator().manual_seed(0)).audio_values.shape
    torch.Size([1, 64])

    ```
    """

    def __init__(self, config: AudioVQVAEConfig):
        super().__init__(config)
        self.encoder = AudioEncoder(config)
        self.quantizer = build_quantizer(config)
        self.decoder = AudioDecoder(config)
        self.post_init()

    # ----------------------------------------------------------------------------------------------- checks

    def _check_input_values(self, input_values) -> None:
        hop = self.config.hop_length
        if not isinstance(input_values, torch.Tensor):
            raise ValueError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}")
        if not input_values.is_floating_point():
            raise ValueError(
                f"input_values must be floats in [-1, 1], got dtype {input_values.dtype}; convert PCM with "
                "AudioVQVAEFeatureExtractor"
            )
        if input_values.ndim != 2:
            hint = " (several channels: the model takes mono audio; average the channels)" if input_values.ndim == 3 else ""
            raise ValueError(
                f"input_values must have shape (batch, samples) of mono audio, got {tuple(input_values.shape)}{hint}"
            )
        check_not_empty("input_values", input_values, "clips")
        length = input_values.shape[-1]
        if length < hop:
            raise ValueError(
                f"the audio has {length} samples, shorter than one latent ({hop} samples, hop_length); pass longer clips"
            )
        if length % hop:
            raise ValueError(
                f"the audio length ({length} samples) must be a multiple of hop_length={hop}; pad it with "
                "AudioVQVAEFeatureExtractor"
            )
        # NaN/Inf samples would get arbitrary codes and a NaN loss; 16-bit PCM as floats would be clipped to +-1.
        check_signal_values(
            "input_values", input_values, kind="audio samples", likely_cause="16-bit PCM stored as floats",
            fix="use AudioVQVAEFeatureExtractor, or divide 16-bit PCM by 32768", training=self.training,
        )

    def _check_codes(self, codes) -> None:
        axes = self.quantizer.code_layout.code_axes("latents")
        if not is_integer_tensor(codes) or codes.ndim != 1 + len(axes):
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"codes must be an integer tensor of shape (batch, {', '.join(axes)}), got {shape}")
        check_not_empty("codes", codes, "sequences of codes")
        if codes.shape[-1] == 0:
            raise ValueError("codes must hold at least one latent, got an empty sequence")
        check_ids_in_range("codes must lie", codes, self.config.num_embeddings, "num_embeddings")

    def speaker_ids(
        self, speakers: int | str | Sequence[int | str] | torch.Tensor | None, batch_size: int
    ) -> torch.LongTensor | None:
        """Speakers (ids or names from `config.speaker_names`; one for all or one per clip) as a (batch_size,) tensor
        on the model's device; None for a model without speaker conditioning."""
        config = self.config
        if config.num_speakers == 0:
            if speakers is not None:
                raise ValueError("this model has no speaker conditioning (num_speakers=0); pass no speaker")
            return None
        if speakers is None:
            raise ValueError(
                f"this model is conditioned on {config.num_speakers} speakers: pass a speaker id in "
                f"[0, {config.num_speakers}){self._speaker_names_hint()}"
            )
        if isinstance(speakers, np.ndarray):
            speakers = torch.from_numpy(speakers)
        if isinstance(speakers, torch.Tensor):
            if not is_integer_tensor(speakers):
                raise ValueError(f"speaker ids must be integers, got {speakers.dtype}")
            ids = speakers.reshape(-1).long()
        else:
            values = list(speakers) if isinstance(speakers, (list, tuple)) else [speakers]
            ids = torch.tensor([self._speaker_id(value) for value in values], dtype=torch.long)
        if ids.numel() == 1:
            ids = ids.expand(batch_size)
        if ids.numel() != batch_size:
            raise ValueError(f"pass one speaker for all clips or one per clip ({batch_size}), got {ids.numel()}")
        check_ids_in_range("unknown speaker id: ids must lie", ids, config.num_speakers, "num_speakers")
        return ids.to(self.device)

    def _speaker_id(self, speaker) -> int:
        if isinstance(speaker, str):
            names = self.config.speaker_names or []
            if speaker not in names:
                raise ValueError(f"unknown speaker name {speaker!r}; the model knows {names}")
            return names.index(speaker)
        if not is_integer(speaker):
            raise ValueError(f"a speaker is an integer id or a name, got {speaker!r}")
        return int(speaker)

    def _speaker_names_hint(self) -> str:
        names = self.config.speaker_names
        return f" or a name from {names}" if names else ""

    # ----------------------------------------------------------------------------------------------- model

    def encode(self, input_values: torch.Tensor, return_dict: bool | None = None) -> AudioVQVAEEncoderOutput | tuple:
        """Waveforms (B, T) -> continuous latents z_e, their quantized z_q and the codes (B, T / hop_length)."""
        self._check_input_values(input_values)
        latents = self.encoder(input_values.unsqueeze(1).to(self.encoder.project_to_codes.weight.dtype))
        quantized = self.quantizer(latents)
        output = AudioVQVAEEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def forward(
        self,
        input_values: torch.Tensor,
        speaker_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> AudioVQVAEOutput | tuple:
        """Encode, quantize, and score the input's own mu-law samples with the teacher-forced decoder; the loss is
        eq. 3 with the decoder's cross-entropy as the reconstruction term. With `output_hidden_states` (default:
        `config.output_hidden_states`) the output also holds the encoder's and the decoder's activations."""
        self._check_input_values(input_values)
        speaker_ids = self.speaker_ids(speaker_ids, input_values.shape[0])
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        encoder_hidden_states = [] if output_hidden_states else None
        decoder_hidden_states = [] if output_hidden_states else None
        latents = self.encoder(
            input_values.unsqueeze(1).to(self.encoder.project_to_codes.weight.dtype), encoder_hidden_states
        )
        quantized = self.quantizer(latents)
        targets = mu_law_encode(input_values, self.config.mu_law_channels)
        logits = self.decoder(targets, quantized.quantized, speaker_ids, hidden_states=decoder_hidden_states)
        reconstruction_loss = F.cross_entropy(logits.float(), targets)
        output = AudioVQVAEOutput(
            loss=reconstruction_loss + quantized.loss,
            logits=logits,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
            indices=quantized.indices,
            encoder_hidden_states=tuple(encoder_hidden_states) if output_hidden_states else None,
            decoder_hidden_states=tuple(decoder_hidden_states) if output_hidden_states else None,
        )
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    @torch.no_grad()
    def teacher_forced_bits(
        self,
        input_values: torch.Tensor,
        speaker_ids: int | str | Sequence[int | str] | torch.Tensor | None = None,
        codes: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Bits per sample of each clip (B,) under the decoder fed the clip's own past samples, conditioned on `codes`
        (B, T / hop_length; by default the clip's own) and the speakers. Given another clip's codes, the difference
        tells how much the decoder reads its codes (a decoder that ignores them scores both alike)."""
        self._check_input_values(input_values)
        input_values = input_values.to(self.device)
        if codes is None:
            codes = self.encode(input_values).indices
        self._check_codes(codes)
        if codes.shape != (input_values.shape[0], input_values.shape[1] // self.config.hop_length):
            raise ValueError(
                f"codes of shape {tuple(codes.shape)} do not match audio of shape {tuple(input_values.shape)}: expected "
                f"{(input_values.shape[0], input_values.shape[1] // self.config.hop_length)}"
            )
        speaker_ids = self.speaker_ids(speaker_ids, input_values.shape[0])
        quantized = self.quantizer.lookup(codes.to(self.device)).to(self.decoder.latent_conditioning.weight.dtype)
        targets = mu_law_encode(input_values, self.config.mu_law_channels)
        logits = self.decoder(targets, quantized, speaker_ids)
        return F.cross_entropy(logits.float(), targets, reduction="none").mean(-1) / math.log(2)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.LongTensor,
        speaker_ids: int | str | Sequence[int | str] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
        return_dict: bool | None = None,
    ) -> AudioVQVAEDecoderOutput | tuple:
        """Codes (B, L) -> waveforms (B, L * hop_length), drawn sample by sample from the decoder.

        Args:
            codes: integers in [0, num_embeddings); for residual VQ (B, k, L), the first k <= N stages (the bitrate).
            speaker_ids: the voice: one id or name for all, or one per sequence (None without speakers).
            generator: the source of randomness; the cached and plain generators draw the same numbers in the same
                order, so a seeded generator gives the same waveform with either.
            temperature: divides the logits; at least 1e-3.
            use_cache: per-block queues of past activations (one position per block per sample); False runs the
                decoder over its receptive field for every sample (the reference, hundreds of times slower).
            progress_callback: called as `progress_callback(samples_done, samples)`.
        """
        self._check_codes(codes)
        check_temperature(temperature)
        speaker_ids = self.speaker_ids(speaker_ids, codes.shape[0])
        quantized = self.quantizer.lookup(codes.to(self.device)).to(self.decoder.latent_conditioning.weight.dtype)
        local, speaker = self.decoder.conditioning(quantized, speaker_ids)
        samples = self.decoder.wavenet.generate(
            codes.shape[0], codes.shape[-1] * self.config.hop_length, local, speaker, temperature=temperature,
            generator=generator, use_cache=use_cache, progress_callback=progress_callback,
        )
        output = AudioVQVAEDecoderOutput(
            audio_values=mu_law_decode(samples, self.config.mu_law_channels), mu_law_samples=samples
        )
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    @torch.no_grad()
    def convert(
        self,
        input_values: torch.Tensor,
        target_speaker: int | str | Sequence[int | str] | torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
        return_dict: bool | None = None,
    ) -> AudioVQVAEDecoderOutput | tuple:
        """Speaker conversion: encode the audio, decode its codes in `target_speaker`'s voice."""
        if self.config.num_speakers == 0:
            raise ValueError("speaker conversion needs a model conditioned on speakers (num_speakers > 0)")
        codes = self.encode(input_values).indices
        return self.decode(
            codes, target_speaker, generator=generator, temperature=temperature, use_cache=use_cache,
            progress_callback=progress_callback, return_dict=return_dict,
        )

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`, `audio_path`)."""
        return audio_vqvae_model_card(self.config, repo_id, **card_fields)

    def _use_return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict


__all__ = ["AudioVQVAEDecoderOutput", "AudioVQVAEEncoderOutput", "AudioVQVAEModel", "AudioVQVAEOutput"]
