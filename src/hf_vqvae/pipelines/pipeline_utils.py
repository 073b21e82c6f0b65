"""What every hf-vqvae pipeline shares: loading by Hub id and pushing with a model card."""

import os
from pathlib import Path

from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard, snapshot_download

from ..hub import push_with_card


class HubDiffusionPipeline(DiffusionPipeline):
    """A `DiffusionPipeline` whose components come from hf-vqvae: `from_pretrained` takes a folder or a Hub id, and
    `push_to_hub` uploads the folder with the card of `model_card`. Subclasses implement `model_card`."""

    push_commit_message = "Upload pipeline with hf-vqvae"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local pipeline folder or a Hub id.

        diffusers refuses components from a third-party package when given a Hub id, so a Hub id
        is first resolved to a local snapshot with `snapshot_download`, which honours the cache
        and offline mode. Components can be replaced: `from_pretrained(path, prior=other_prior)`.
        """
        if not Path(pretrained_model_name_or_path).is_dir():
            pretrained_model_name_or_path = snapshot_download(
                str(pretrained_model_name_or_path),
                cache_dir=kwargs.pop("cache_dir", None),
                revision=kwargs.pop("revision", None),
                token=kwargs.pop("token", None),
                local_files_only=kwargs.pop("local_files_only", False),
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def model_card(self, repo_id: str, **card_fields) -> ModelCard:
        raise NotImplementedError

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **card_fields,
    ):
        """Upload the pipeline folder (model_index.json and one folder per component) with a model
        card; `card_fields` go to `model_card` (`dataset_name`, `metrics`, `image_path`)."""
        return push_with_card(
            self.save_pretrained,
            lambda resolved_repo_id: self.model_card(resolved_repo_id, **card_fields),
            repo_id,
            token=token,
            private=private,
            commit_message=commit_message or self.push_commit_message,
            revision=revision,
            create_pr=create_pr,
        )
