"""The model card of a `PixelCNNPriorModel`, rendered from `model_cards/prior.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import IMAGE_GENERATION, config_fields, image_generation_tags, package_model_card


def prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `PixelCNNPriorModel`; `card_fields` as for `vqvae_model_card`."""
    return package_model_card(
        "prior", repo_id, tags=["pixelcnn", "autoregressive-prior", *image_generation_tags(config.num_classes)],
        pipeline_tag=IMAGE_GENERATION,
        config=config, config_fields=config_fields(config), **card_fields,
    )
