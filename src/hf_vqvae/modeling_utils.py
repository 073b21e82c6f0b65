"""What every hf-vqvae model shares: strict checkpoint loading and a push with a model card."""

import math
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import logging

from .hub import push_with_card
from .input_checks import check_code_grids, checked_class_labels
from .input_checks import is_tracing  # noqa: F401  imported from here by code written before input_checks
from .quantization.base import Quantizer
from .loading import check_local_path_exists, damaged_weights_error, missing_folder_error, non_finite_tensors


logger = logging.get_logger(__name__)


def check_code_grid_of_vqvae(what: str, config, num_embeddings: int, latent_height: int, latent_width: int) -> None:
    """Raise ValueError unless a model over code grids (`config.num_embeddings`, `grid_height`, `grid_width`)
    models the codes of a VQ-VAE with this codebook size and latent grid; `what` names the model."""
    if num_embeddings != config.num_embeddings:
        raise ValueError(
            f"{what} has num_embeddings={config.num_embeddings} but the VQ-VAE's codebook has "
            f"{num_embeddings} codes; they must be equal"
        )
    if (latent_height, latent_width) != (config.grid_height, config.grid_width):
        raise ValueError(
            f"{what} models {config.grid_height}x{config.grid_width} code grids (grid_height x grid_width) "
            f"but the VQ-VAE's latent grid is {latent_height}x{latent_width}; they must be equal"
        )


def fixed_codebook_error(what: str, field: str, config_class: str) -> ValueError:
    """The error of `resize_token_embeddings` on a model over a VQ-VAE's codes: they are the codebook (`field`),
    which also sets the number of logits, so resizing the input embedding alone would break the model."""
    return ValueError(
        f"{what}'s codes are a VQ-VAE's codebook ({field}, also the number of logits): to model another codebook, "
        f"train a model from a {config_class} with that {field}"
    )


class CodeGridPriorMixin:
    """What the priors over a VQ-VAE's code grids (`PixelCNNPriorModel`, `TransformerPriorModel`) check the same way:
    the VQ-VAE they complete, code grids, class labels, and the scored `labels` of a forward. The model provides
    `config` (`num_embeddings`, `grid_height`, `grid_width`, `num_classes`) and `device`."""

    def check_compatible_with_vqvae(self, num_embeddings: int, latent_height: int, latent_width: int) -> None:
        """Raise ValueError unless this prior models the codes of a VQ-VAE with this codebook size and grid."""
        check_code_grid_of_vqvae("the prior", self.config, num_embeddings, latent_height, latent_width)

    def _check_codes(self, name: str, codes: torch.Tensor) -> None:
        config = self.config
        check_code_grids(
            name, codes, config.num_embeddings, "num_embeddings", (config.grid_height, config.grid_width),
            "the prior's grid_height x grid_width",
        )

    def _checked_class_labels(self, class_labels, batch_size: int) -> torch.Tensor | None:
        """`class_labels` as a (batch_size,) long tensor on the model's device, or None for an unconditional prior."""
        return checked_class_labels(class_labels, self.config.num_classes, batch_size, self.device)

    def _code_loss(self, logits: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean negative log-likelihood in nats of the codes `labels` under (batch, K, height, width) logits."""
        self._check_codes("labels", labels)
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"`labels` must have the shape of `input_ids` {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
            )
        return F.cross_entropy(logits.float(), labels.long())


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes."""


class HubPreTrainedModel(PreTrainedModel):
    """`PreTrainedModel` whose `from_pretrained` fails on missing, unexpected, mis-shaped or
    non-finite weights, and whose `push_to_hub` uploads a model card rendered from `model_cards/`.

    transformers only logs missing weights and re-initialises them at random, which would hand
    a user a silently broken codebook or prior. transformers' escape hatches keep their meaning:
    `ignore_mismatched_sizes=True` re-initialises mis-shaped weights (missing ones stay an error),
    `output_loading_info=True` returns `(model, loading_info)` and reports missing and unexpected
    weights there (and in a warning) instead of raising. Subclasses implement `model_card`.
    """

    # Regex renames of checkpoint keys saved by earlier versions of the package (transformers' `key_mapping`).
    legacy_key_mapping: dict[str, str] | None = None

    def model_card(self, repo_id: str, **card_fields) -> ModelCard:
        raise NotImplementedError

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's own initialisation of every model's layers (transformers' N(0, 0.02) starves deep ReLU and
        gated stacks), through the helpers that leave loaded tensors alone; the quantizer's state from itself."""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)
        elif isinstance(module, Quantizer):
            module.initialize_state()

    def _get_dtype_plan(self, dtype) -> dict:
        """transformers casts every tensor under a `_keep_in_fp32_modules(_strict)` module to fp32 when
        loading with dtype=fp16/bf16, integer and bool buffers included (a step counter would become a
        float). The plan here names each tensor: floating ones go to fp32, the others keep their dtype."""
        plan = super()._get_dtype_plan(dtype)
        per_tensor = {}
        for name, tensor in self.state_dict().items():
            for pattern, plan_dtype in plan.items():
                if re.search(pattern.replace("*", ".*"), name):
                    per_tensor[rf"^{re.escape(name)}$"] = plan_dtype if tensor.is_floating_point() else tensor.dtype
                    break
        return per_tensor

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if cls.legacy_key_mapping:
            kwargs.setdefault("key_mapping", cls.legacy_key_mapping)
        ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
        return_loading_info = kwargs.pop("output_loading_info", False)
        if pretrained_model_name_or_path is not None:  # None: weights come as `state_dict=`
            check_local_path_exists(pretrained_model_name_or_path)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
            )
        except SafetensorError as error:
            raise damaged_weights_error(
                pretrained_model_name_or_path, error, kwargs.get("subfolder"), kwargs.get("cache_dir")
            ) from error
        except OSError as error:
            if pretrained_model_name_or_path is None or Path(pretrained_model_name_or_path).exists():
                raise
            raise missing_folder_error(pretrained_model_name_or_path, error) from error

        where = f"the checkpoint at {str(pretrained_model_name_or_path)!r}"
        mismatched = [
            f"  {name}: checkpoint has shape {tuple(stored)}, the config gives {tuple(expected)}"
            for name, stored, expected in info["mismatched_keys"]
        ]
        incomplete = [f"  {name}: missing from the checkpoint" for name in sorted(info["missing_keys"])]
        incomplete += [f"  {name}: in the checkpoint but not in the model" for name in sorted(info["unexpected_keys"])]
        problems, hints = [], []
        if mismatched and not ignore_mismatched_sizes:
            problems += mismatched
            hints.append("ignore_mismatched_sizes=True re-initialises mis-shaped weights")
        if incomplete and not return_loading_info:
            problems += incomplete
            hints.append("output_loading_info=True loads anyway and returns the lists of missing and unexpected weights")
        if problems:
            raise CheckpointMismatchError(
                f"{where} does not match the {cls.config_class.__name__} it is loaded with (was it saved from a "
                f"different config?):\n" + "\n".join(problems) + f"\n({'; '.join(hints)})"
            )
        if mismatched or incomplete:
            logger.warning(f"{where} does not match the config; loaded anyway:\n" + "\n".join(mismatched + incomplete))
        non_finite = non_finite_tensors(model)
        if non_finite:
            raise ValueError(
                f"{where} holds NaN or Inf values in {', '.join(non_finite)} (a damaged file, a diverged training run, "
                f"or weights too large for dtype={model.dtype}); refusing to load them"
            )
        return (model, info) if return_loading_info else model

    def save_pretrained(
        self, save_directory, *args, variant: str | None = None, max_shard_size: int | str = "50GB", **kwargs
    ):
        """transformers' `save_pretrained`, with the weights readable as any file the user writes (transformers
        writes them through a private temporary file, mode 0600). `variant="fp16"` writes `model.fp16.safetensors`,
        which `from_pretrained(..., variant="fp16")` loads; `variant` and `max_shard_size` are named here because
        diffusers' `DiffusionPipeline.save_pretrained` passes them on only to a save method whose signature names
        them."""
        result = super().save_pretrained(
            save_directory, *args, variant=variant, max_shard_size=max_shard_size, **kwargs
        )
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
