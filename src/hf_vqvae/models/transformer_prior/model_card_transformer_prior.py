"""The model card of a `TransformerPriorModel`, rendered from `model_cards/transformer_prior.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import IMAGE_GENERATION, config_fields, image_generation_tags, package_model_card


def transformer_prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `TransformerPriorModel`; `card_fields` as for `vqvae_model_card`."""
    decoder = config.decoder_config
    tags = ["transformer", decoder.model_type, "autoregressive-prior", *image_generation_tags(config.num_classes)]
    return package_model_card(
        "transformer_prior", repo_id, tags=tags, pipeline_tag=IMAGE_GENERATION, config=config, decoder=decoder, config_fields=config_fields(config), **card_fields,
    )
