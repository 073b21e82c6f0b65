"""The model card of an `AudioVQVAEModel`, rendered from `model_cards/audio_vqvae.md`."""

from huggingface_hub import ModelCard

from ...model_card_utils import config_fields, package_model_card


def audio_vqvae_model_card(config, repo_id: str, *, audio_path: str | None = None, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEModel`: usage (reconstruction, speaker conversion), figures, the speakers, the
    config; `card_fields` as for `vqvae_model_card`, and `audio_path` (a sample's file, relative to the repo)."""
    return package_model_card(
        "audio_vqvae", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"], pipeline_tag="audio-to-audio",
        config=config, config_fields=config_fields(config), audio_path=audio_path, **card_fields,
    )
