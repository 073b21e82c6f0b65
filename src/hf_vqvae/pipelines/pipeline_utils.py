"""What every hf-vqvae pipeline shares: loading by Hub id and pushing with a model card."""

import os

from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard

from ..hub import push_with_card
from ..loading import local_pipeline_folder


class HubDiffusionPipeline(DiffusionPipeline):
    """A `DiffusionPipeline` whose components come from hf-vqvae: `from_pretrained` takes a folder or a Hub id, and
    `push_to_hub` uploads the folder with the card of `model_card`. Subclasses implement `model_card`."""

    push_commit_message = "Upload pipeline with hf-vqvae"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local pipeline folder or a Hub id (`loading.local_pipeline_folder`: diffusers refuses a
        third-party package's components by Hub id, so the snapshot is fetched first, honouring the cache and
        offline mode). Components can be replaced: `from_pretrained(path, prior=other_prior)`. A name that is
        no local folder and no reachable Hub id, or a folder missing a component, is an error that says which."""
        return super().from_pretrained(local_pipeline_folder(pretrained_model_name_or_path, kwargs), **kwargs)

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
