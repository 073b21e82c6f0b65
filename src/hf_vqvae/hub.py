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


def vqvae_model_card(
    config,
    repo_id: str,
    *,
    dataset_name: str | None = None,
    metrics: dict[str, float] | None = None,
    image_path: str | None = None,
) -> ModelCard:
    """The card of a `VQVAEModel`: usage snippet, figures, a reconstruction grid, the config."""
    card_data = ModelCardData(
        library_name="hf-vqvae",
        license="apache-2.0",
        tags=["vq-vae", "image-tokenizer", "hf-vqvae"],
        pipeline_tag="image-to-image",
        datasets=[dataset_name] if dataset_name else None,
    )
    config_fields = {key: value for key, value in sorted(config.to_diff_dict().items()) if key != "transformers_version"}
    return render_model_card(
        "vqvae",
        card_data,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        config=config,
        config_fields=config_fields,
        latent_size=config.latent_size,
        dataset_name=dataset_name,
        metrics=metrics or {},
        image_path=image_path,
    )
