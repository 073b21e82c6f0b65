"""The model card of a `VQVAEModel`, rendered from `model_cards/vqvae.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import config_fields, package_model_card


def vqvae_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEModel`: usage snippet, figures, a reconstruction grid, the config.

    `card_fields`: `dataset_name`, `metrics` (name -> value), `image_path` (relative to the repo).
    """
    return package_model_card(
        "vqvae", repo_id, tags=["image-tokenizer"], pipeline_tag="image-feature-extraction",
        config=config, config_fields=config_fields(config), latent_size=config.latent_size, **card_fields,
    )
