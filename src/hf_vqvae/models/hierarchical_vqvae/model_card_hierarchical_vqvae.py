"""The model card of a `HierarchicalVQVAEModel`, rendered from `model_cards/hierarchical_vqvae.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import IMAGE_GENERATION, config_fields, package_model_card


def hierarchical_vqvae_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `HierarchicalVQVAEModel` (the second stage); `card_fields` as for `vqvae_model_card`."""
    return package_model_card(
        "hierarchical_vqvae", repo_id, tags=["pixelcnn", "hierarchical-vq-vae"], pipeline_tag=IMAGE_GENERATION,
        config=config, config_fields=config_fields(config), **card_fields,
    )
