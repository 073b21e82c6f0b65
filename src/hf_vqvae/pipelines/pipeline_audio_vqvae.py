"""AudioVQVAEPipeline: reconstruct, convert the voice of, or generate speech with an audio VQ-VAE (and a prior over
its code sequence)."""

import torch
from diffusers import AudioPipelineOutput

from .pipeline_cards import audio_pipeline_model_card
from ..models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from .pipeline_utils import HubDiffusionPipeline, Prior, batch_size_of, sample_prior


AUDIO_OUTPUT_TYPES = ("np", "pt")


def check_feature_extractor_fits(feature_extractor: AudioVQVAEFeatureExtractor, config) -> None:
    """Raise ValueError unless the feature extractor prepares audio at the rate and in the hops of the model of
    `config` (an `AudioVQVAEConfig`): otherwise audio at one rate would run through a model trained at another."""
    expected = (config.sampling_rate, config.hop_length)
    found = (feature_extractor.sampling_rate, feature_extractor.hop_length)
    if found != expected:
        raise ValueError(
            f"the feature extractor prepares audio at {found[0]} Hz in hops of {found[1]} samples but the audio VQ-VAE "
            f"takes {expected[0]} Hz in hops of {expected[1]} (sampling_rate and hop_length must be equal; in a saved "
            "pipeline they are in feature_extractor/preprocessor_config.json and vqvae/config.json). Use "
            "AudioVQVAEFeatureExtractor.for_model(vqvae.config), or feature_extractor=None for a matching one"
        )


def _count(speaker) -> int | None:
    """How many speakers `speaker` names: None for none, one for an id or a name, else one per entry."""
    if speaker is None:
        return None
    if isinstance(speaker, torch.Tensor):
        return speaker.numel()
    return len(speaker) if isinstance(speaker, (list, tuple)) else 1


class AudioVQVAEPipeline(HubDiffusionPipeline):
    r"""
    Speech with the audio VQ-VAE of the paper's section 4.3. One call does one of:

    - reconstruction: `pipeline(audio=waveform, sampling_rate=16000, speaker=source)`;
    - speaker conversion: the same with another `speaker` (the codes carry the content, the decoder the voice);
    - generation from codes: `pipeline(codes=codes, speaker=...)`;
    - unconditional generation: `pipeline(batch_size=2, speaker=...)`, the codes drawn from the prior (a gated
      PixelCNN or a transformer over a one-row grid of `grid_width` codes, so `grid_width * hop_length` samples), as
      scripts/train_prior.py trains it on the codes of scripts/extract_speech_codes.py.

    Returns an `AudioPipelineOutput` whose `audios` is (batch, samples) at `vqvae.config.sampling_rate`.

    Args:
        vqvae ([`AudioVQVAEModel`]): encoder, codebook and WaveNet decoder.
        prior ([`PixelCNNPriorModel`] or [`TransformerPriorModel`], *optional*): a prior over the code sequence with `grid_height=1` and the
            VQ-VAE's codebook size; with `num_classes` equal to the number of speakers it is conditioned on the
            speaker. Needed only for unconditional generation.
        feature_extractor ([`AudioVQVAEFeatureExtractor`], *optional*): prepares `audio=` inputs; its sampling rate
            and hop length must be the VQ-VAE's (checked here, so also when a saved pipeline loads). Without one
            (None, as diffusers' optional components are), one matching the VQ-VAE is used; None is what
            `save_pretrained` records and `from_pretrained` gives back.
    """

    model_cpu_offload_seq = "prior->vqvae"
    push_commit_message = "Upload audio VQ-VAE pipeline with hf-vqvae"
    _optional_components = ["prior", "feature_extractor"]

    def __init__(
        self,
        vqvae: AudioVQVAEModel,
        prior: Prior | None = None,
        feature_extractor: AudioVQVAEFeatureExtractor | None = None,
    ):
        super().__init__()
        if prior is not None:
            if prior.config.grid_height != 1:
                raise ValueError(
                    f"the prior of an audio pipeline models a sequence of codes: it needs grid_height=1, got "
                    f"{prior.config.grid_height}"
                )
            prior.check_compatible_with_vqvae(vqvae.config.code_layout.prior_num_embeddings, 1, prior.config.grid_width)
            if prior.config.num_classes not in (0, vqvae.config.num_speakers):
                raise ValueError(
                    f"a speaker-conditioned prior needs num_classes equal to the VQ-VAE's num_speakers "
                    f"({vqvae.config.num_speakers}), got {prior.config.num_classes}"
                )
        if feature_extractor is not None:
            check_feature_extractor_fits(feature_extractor, vqvae.config)
        self.register_modules(vqvae=vqvae, prior=prior, feature_extractor=feature_extractor)

    def model_card(self, repo_id: str, **card_fields):
        """The card `push_to_hub` uploads (`pipeline_cards.audio_pipeline_model_card`; `dataset_name`, `metrics`, `image_path`)."""
        prior_config = self.prior.config if self.prior is not None else None
        return audio_pipeline_model_card(self.vqvae.config, prior_config, repo_id, **card_fields)

    @torch.no_grad()
    def __call__(
        self,
        audio=None,
        sampling_rate: int | None = None,
        codes: torch.LongTensor | None = None,
        speaker: int | str | list[int | str] | torch.Tensor | None = None,
        batch_size: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        output_type: str = "np",
        return_dict: bool = True,
        guidance_scale: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> AudioPipelineOutput | tuple:
        r"""
        Args:
            audio (*optional*): waveforms to reconstruct or convert (a 1-D array, a list of them, or input values
                as a (batch, samples) float tensor).
            sampling_rate (`int`, *optional*): the rate of `audio`; checked against the model's (the feature
                extractor resamples only if built with `do_resample=True`).
            codes (`torch.LongTensor`, *optional*): (batch, latents) codes to decode instead.
            speaker (*optional*): the voice of the output: an id or a name, one for all or one per clip.
            batch_size (`int`, *optional*): clips to generate from the prior (neither `audio` nor `codes`); defaults
                to one per speaker (`speaker=["ann", "bob"]` gives two clips), or 1.
            temperature (`float`, defaults to 1.0): divides the decoder's (and the prior's) logits.
            generator (`torch.Generator`, *optional*): makes sampling reproducible.
            use_cache (`bool`, defaults to `True`): cached sample-by-sample generation (False: the plain reference).
            output_type (`str`, defaults to `"np"`): `"np"` or `"pt"`.
            return_dict (`bool`, defaults to `True`): an `AudioPipelineOutput` or a tuple `(audios,)`.
            guidance_scale, top_k, top_p (*optional*): a transformer prior's classifier-free guidance (towards the
                speaker) and top-k / nucleus cuts (`TransformerPriorModel.sample`); a PixelCNN prior refuses them.
        """
        if output_type not in AUDIO_OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {AUDIO_OUTPUT_TYPES}, got {output_type!r}")
        if audio is not None and codes is not None:
            raise ValueError("pass either audio= (to reconstruct or convert) or codes= (to decode), not both")
        if audio is not None:
            codes = self.vqvae.encode(self._input_values(audio, sampling_rate)).indices
        elif codes is None:
            codes = self._sample_codes(
                batch_size, speaker, temperature, generator, guidance_scale=guidance_scale, top_k=top_k, top_p=top_p
            )

        with self.progress_bar(total=codes.shape[-1] * self.vqvae.config.hop_length if codes.ndim in (2, 3) else 0) as bar:
            audios = self.vqvae.decode(
                codes, speaker, generator=generator, temperature=temperature, use_cache=use_cache,
                progress_callback=lambda done, total: bar.update(done - bar.n),
            ).audio_values
        audios = audios.float().cpu()
        if output_type == "np":
            audios = audios.numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (audios,)
        return AudioPipelineOutput(audios=audios)

    def _input_values(self, audio, sampling_rate: int | None) -> torch.Tensor:
        if isinstance(audio, torch.Tensor) and audio.is_floating_point() and audio.ndim == 2:
            input_values = audio
        else:
            if isinstance(audio, torch.Tensor):
                audio = audio.cpu().numpy()
            feature_extractor = self.feature_extractor
            if feature_extractor is None:
                feature_extractor = AudioVQVAEFeatureExtractor.for_model(self.vqvae.config)
            input_values = feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt")["input_values"]
        return input_values.to(device=self.vqvae.device, dtype=self.vqvae.dtype)

    def _sample_codes(self, batch_size, speaker, temperature, generator, **options) -> torch.LongTensor:
        if self.prior is None:
            raise ValueError(
                "generating without audio= or codes= needs a prior over the codes; this pipeline has none "
                "(extract the VQ-VAE's codes with scripts/extract_speech_codes.py and train one on them with "
                "scripts/train_prior.py, or pass codes=)"
            )
        batch_size = batch_size_of(batch_size, _count(speaker), "speaker", "clip")
        class_labels = None
        if self.prior.config.num_classes:
            class_labels = self.vqvae.speaker_ids(speaker, batch_size)
        tokens = sample_prior(
            self.prior, batch_size, class_labels=class_labels, temperature=temperature, generator=generator, **options
        )
        return self.vqvae.config.code_layout.from_prior_grid(tokens[:, 0])


__all__ = ["AudioVQVAEPipeline"]
