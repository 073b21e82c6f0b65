"""The model cards of the pipelines, one builder each, rendered from the pipelines' templates in `model_cards/`."""

from huggingface_hub import ModelCard

from ..model_card_utils import IMAGE_GENERATION, image_generation_tags, package_model_card
from ..models.transformer_prior.configuration_transformer_prior import TransformerPriorConfig


def prior_card_fields(prior_config) -> dict:
    """What a pipeline's card says of its prior, a gated PixelCNN or a transformer (None: no prior): `prior_kind`
    (a phrase), `prior_class`, `prior_settings` and the `prior_tag` of the card's metadata."""
    if prior_config is None:
        return {}
    if isinstance(prior_config, TransformerPriorConfig):
        decoder = prior_config.decoder_config
        return dict(
            prior_kind=f"a transformer prior (a {decoder.model_type} causal language model)",
            prior_class="TransformerPriorModel", prior_tag="transformer",
            prior_settings=f"{decoder.num_hidden_layers} {decoder.model_type} layers of width {decoder.hidden_size}",
        )
    return dict(
        prior_kind="a gated PixelCNN prior", prior_class="PixelCNNPriorModel", prior_tag="pixelcnn",
        prior_settings=f"{prior_config.num_layers} gated layers of {prior_config.hidden_channels} channels, kernel "
        f"{prior_config.kernel_size}",
    )


def pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    prior_fields = prior_card_fields(prior_config)
    return package_model_card(
        "pipeline", repo_id, tags=[prior_fields["prior_tag"], "image-generation", *image_generation_tags(prior_config.num_classes)],
        pipeline_tag=IMAGE_GENERATION,
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **prior_fields, **card_fields,
    )


def hierarchical_pipeline_model_card(vqvae_config, stage2_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `HierarchicalVQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    prior_fields = prior_card_fields(prior_config)
    tags = sorted({"pixelcnn", prior_fields["prior_tag"]}) + ["hierarchical-vq-vae", "image-generation"]
    return package_model_card(
        "hierarchical_pipeline", repo_id, tags=tags, pipeline_tag=IMAGE_GENERATION,
        vqvae=vqvae_config, stage2=stage2_config, prior=prior_config, **prior_fields, **card_fields,
    )


def video_pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VideoPredictionPipeline`; `card_fields` as for `vqvae_model_card`."""
    return package_model_card(
        "video_pipeline", repo_id, tags=["pixelcnn", "video-prediction", "world-model"], pipeline_tag="image-to-video",
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **card_fields,
    )


def audio_pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEPipeline` (its prior may be None); `card_fields` as for `audio_vqvae_model_card`."""
    return package_model_card(
        "audio_pipeline", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"],
        pipeline_tag="audio-to-audio", vqvae=vqvae_config, prior=prior_config, **prior_card_fields(prior_config),
        **card_fields,
    )
