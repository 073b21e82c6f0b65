"""The model card of a `VideoPriorModel`, rendered from `model_cards/video_prior.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import config_fields, package_model_card


def video_prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VideoPriorModel`; `card_fields` as for `vqvae_model_card` (and `training`)."""
    return package_model_card(
        "video_prior", repo_id, tags=["pixelcnn", "video-prediction", "world-model"], pipeline_tag="image-to-video",
        config=config, config_fields=config_fields(config), **card_fields,
    )
