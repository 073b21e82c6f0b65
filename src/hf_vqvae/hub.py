"""Uploads to the Hugging Face Hub, shared by models, pipelines and training: a folder in one commit, with its model
card."""

import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, ModelCard


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
