"""Model cards and uploads to the Hugging Face Hub, shared by models, pipeline and scripts."""

import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData


def render_model_card(template: str, card_data: ModelCardData, **fields) -> ModelCard:
    """A model card from `model_cards/<template>.md` (Jinja, rendered by huggingface_hub)."""
    template_path = resources.files("hf_vqvae.model_cards") / f"{template}.md"
    with resources.as_file(template_path) as path:
        return ModelCard.from_template(card_data, template_path=str(path), **fields)


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with hf-vqvae",
    revision: str | None = None,
    create_pr: bool = False,
):
    """Create `repo_id` if needed and upload `folder` in one commit; returns the commit info.

    `HfApi` is created here (not bound at import) so tests can patch `HfApi.create_repo` and
    `HfApi.upload_folder` and see exactly what would be uploaded.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        revision=revision,
        create_pr=create_pr,
    )


def push_with_card(
    save: Callable[[Path], None],
    card: Callable[[str], ModelCard],
    repo_id: str,
    **push_kwargs,
):
    """Save into a temporary folder, write the card built for `repo_id` as README.md, upload.

    The card is written into the folder rather than pushed with `ModelCard.push_to_hub`, which
    validates over the network.
    """
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        card(repo_id).save(Path(folder) / "README.md")
        return push_folder_to_hub(folder, repo_id, **push_kwargs)


def _config_fields(config) -> dict:
    """The config's non-default fields, for the card's configuration table."""
    return {key: value for key, value in sorted(config.to_diff_dict().items()) if key != "transformers_version"}


def _model_card(
    template: str,
    repo_id: str,
    *,
    tags: list[str],
    pipeline_tag: str,
    dataset_name: str | None = None,
    metrics: dict[str, float] | None = None,
    image_path: str | None = None,
    **fields,
) -> ModelCard:
    """Metadata every hf-vqvae card carries, plus the fields its template shows."""
    card_data = ModelCardData(
        library_name="hf-vqvae",
        license="apache-2.0",
        tags=["hf-vqvae", "vq-vae", *tags],
        pipeline_tag=pipeline_tag,
        datasets=[dataset_name] if dataset_name else None,
    )
    return render_model_card(
        template,
        card_data,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        dataset_name=dataset_name,
        metrics=metrics or {},
        image_path=image_path,
        **fields,
    )


def vqvae_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEModel`: usage snippet, figures, a reconstruction grid, the config.

    `card_fields`: `dataset_name`, `metrics` (name -> value), `image_path` (relative to the repo).
    """
    return _model_card(
        "vqvae", repo_id, tags=["image-tokenizer"], pipeline_tag="image-to-image",
        config=config, config_fields=_config_fields(config), latent_size=config.latent_size, **card_fields,
    )


def prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `PixelCNNPriorModel`; `card_fields` as for `vqvae_model_card`."""
    return _model_card(
        "prior", repo_id, tags=["pixelcnn", "autoregressive-prior"], pipeline_tag="unconditional-image-generation",
        config=config, config_fields=_config_fields(config), **card_fields,
    )


def pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    return _model_card(
        "pipeline", repo_id, tags=["pixelcnn", "image-generation"], pipeline_tag="unconditional-image-generation",
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **card_fields,
    )


def audio_vqvae_model_card(config, repo_id: str, *, audio_path: str | None = None, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEModel`: usage (reconstruction, speaker conversion), figures, the speakers, the
    config; `card_fields` as for `vqvae_model_card`, and `audio_path` (a sample's file, relative to the repo)."""
    return _model_card(
        "audio_vqvae", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"], pipeline_tag="audio-to-audio",
        config=config, config_fields=_config_fields(config), audio_path=audio_path, **card_fields,
    )


def audio_pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEPipeline` (its prior may be None); `card_fields` as for `audio_vqvae_model_card`."""
    return _model_card(
        "audio_pipeline", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"],
        pipeline_tag="audio-to-audio", vqvae=vqvae_config, prior=prior_config, **card_fields,
    )
