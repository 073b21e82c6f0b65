"""The model cards of the pipelines, one builder each, rendered from the pipelines' templates in `model_cards/`."""

from huggingface_hub import ModelCard

from ..model_card_utils import image_generation_tags, package_model_card


def pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    tags, pipeline_tag = image_generation_tags(prior_config.num_classes)
    return package_model_card(
        "pipeline", repo_id, tags=["pixelcnn", "image-generation", *tags], pipeline_tag=pipeline_tag,
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **card_fields,
    )


def hierarchical_pipeline_model_card(vqvae_config, stage2_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `HierarchicalVQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    return package_model_card(
        "hierarchical_pipeline", repo_id, tags=["pixelcnn", "hierarchical-vq-vae", "image-generation"],
        pipeline_tag="unconditional-image-generation", vqvae=vqvae_config, stage2=stage2_config, prior=prior_config,
        **card_fields,
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
        pipeline_tag="audio-to-audio", vqvae=vqvae_config, prior=prior_config, **card_fields,
    )
