"""What every hf-vqvae model shares: strict checkpoint loading and a push with a model card."""

import os
from pathlib import Path

from huggingface_hub import ModelCard
from transformers import PreTrainedModel

from .hub import push_with_card


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes."""


class HubPreTrainedModel(PreTrainedModel):
    """`PreTrainedModel` whose `from_pretrained` fails on missing, unexpected or mis-shaped
    weights, and whose `push_to_hub` uploads a model card rendered from `model_cards/`.

    transformers only logs missing weights and re-initialises them at random, which would hand
    a user a silently broken codebook or prior. Pass `ignore_mismatched_sizes=True` to get
    transformers' permissive behaviour back. Subclasses implement `model_card`.
    """

    # Regex renames of checkpoint keys saved by earlier versions of the package (transformers' `key_mapping`).
    legacy_key_mapping: dict[str, str] | None = None

    def model_card(self, repo_id: str, **card_fields) -> ModelCard:
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if cls.legacy_key_mapping:
            kwargs.setdefault("key_mapping", cls.legacy_key_mapping)
        if kwargs.get("ignore_mismatched_sizes"):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
        )
        problems = [
            f"  {name}: checkpoint has shape {tuple(stored)}, the config gives {tuple(expected)}"
            for name, stored, expected in info["mismatched_keys"]
        ]
        problems += [f"  {name}: missing from the checkpoint" for name in sorted(info["missing_keys"])]
        problems += [f"  {name}: in the checkpoint but not in the model" for name in sorted(info["unexpected_keys"])]
        if problems:
            raise CheckpointMismatchError(
                f"the checkpoint at {pretrained_model_name_or_path!r} does not match the {cls.config_class.__name__} "
                f"it is loaded with (was it saved from a different config?):\n" + "\n".join(problems)
            )
        return (model, info) if return_loading_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained`, with the weights readable as any file the user writes (transformers
        writes them through a private temporary file, mode 0600)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        mask = os.umask(0)
        os.umask(mask)
        for weights in Path(save_directory).glob("*.safetensors"):
            weights.chmod(0o666 & ~mask)
        return result

    def push_to_hub(
        self,
        repo_id: str,
        *,
        image_processor=None,
        commit_message: str = "Upload with hf-vqvae",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **card_fields,
    ):
        """Upload config, safetensors weights, the image processor (if given) and a model card
        in one commit. `card_fields` go to `model_card` (`dataset_name`, `metrics`, `image_path`)."""

        def save(folder):
            self.save_pretrained(folder)
            if image_processor is not None:
                image_processor.save_pretrained(folder)

        return push_with_card(
            save,
            lambda resolved_repo_id: self.model_card(resolved_repo_id, **card_fields),
            repo_id,
            token=token,
            private=private,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
