"""What every hf-vqvae pipeline shares: loading by Hub id, an entry for diffusers' generic `DiffusionPipeline`, and
pushing with a model card."""

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard

from ..hub import push_with_card
from ..loading import local_pipeline_folder
from ..models.auto import MODELS, PROCESSORS
from ..models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel
from ..models.transformer_prior.modeling_transformer_prior import TransformerPriorModel
from ..version import INSTALL_COMMAND


# The module diffusers' generic `DiffusionPipeline.from_pretrained` imports, as custom code, to find the classes of a
# saved pipeline: model_index.json names the pipeline `[ENTRY_MODULE, class]` and each hf-vqvae component
# `[ENTRY_MODULE, class]`, with a copy of the module at the root and in each component's folder. Every copy holds the
# same text, so that diffusers' module cache (one file per name) never holds a copy for another class.
ENTRY_MODULE = "hf_vqvae_entry"

ENTRY_SOURCE = f'''"""Written by hf-vqvae's save_pretrained, for diffusers' generic loader:
`diffusers.DiffusionPipeline.from_pretrained(folder or Hub id, trust_remote_code=True)` runs this file to find the
classes that model_index.json names. It only imports the installed hf-vqvae package, which installs with
    {INSTALL_COMMAND}
The package's own `from_pretrained` (`hf_vqvae.VQVAEPipeline.from_pretrained(...)` and the others) never runs it and
needs no trust_remote_code."""

from hf_vqvae import *  # noqa: F403  the pipelines and components of the installed package
'''

# The hf-vqvae classes a saved pipeline can hold as components, by class name.
COMPONENT_CLASSES = {
    component.__name__: component
    for component in (*(model for _, model in MODELS), *(processor for _, _, processor in PROCESSORS))
}


# The priors over code grids a pipeline samples: they share `sample`, `check_compatible_with_vqvae` and the config
# fields num_embeddings, grid_height, grid_width, num_classes and id2label.
Prior = PixelCNNPriorModel | TransformerPriorModel


def sample_prior(
    prior: Prior,
    batch_size: int,
    *,
    class_labels: torch.LongTensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | list[torch.Generator] | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
    **options,
) -> torch.LongTensor:
    """Code grids drawn from a prior of either kind, the one place a pipeline samples its prior. `options` are the
    sampling settings only some priors take (a transformer prior's `guidance_scale`, `top_k`, `top_p`): those given
    (not None) go to the prior, and a prior whose `sample` does not take one refuses it by name (`guidance_scale=1`,
    which guides nothing, excepted)."""
    taken = inspect.signature(prior.sample).parameters
    given = {name: value for name, value in options.items() if value is not None}
    if given.get("guidance_scale") == 1 and "guidance_scale" not in taken:
        del given["guidance_scale"]  # a scale of 1 is the conditional distribution itself: no guidance, any prior
    refused = sorted(set(given) - set(taken))
    if refused:
        raise ValueError(
            f"the pipeline's prior, a {type(prior).__name__}, does not take {', '.join(refused)} (a "
            f"{TransformerPriorModel.__name__} does); leave {'them' if len(refused) > 1 else 'it'} out"
        )
    return prior.sample(
        batch_size=batch_size, class_labels=class_labels, temperature=temperature, generator=generator,
        progress_callback=progress_callback, **given,
    )


def batch_size_of(batch_size: int | None, num_labels: int | None, label: str, item: str) -> int:
    """The batch of a generating call given `num_labels` labels (None: no labels; one label serves every item):
    `batch_size`, or when it is None one item per label, as diffusers pipelines take the batch from a list of
    prompts. `label` and `item` name them in errors ("class label", "image")."""
    if num_labels == 0:
        raise ValueError(f"got an empty list of {label}s; pass one {label} for every {item} or one per {item}")
    if batch_size is None:
        return num_labels or 1
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if num_labels not in (None, 1, batch_size):
        raise ValueError(
            f"got {num_labels} {label}s for batch_size={batch_size}: pass one {label} for every {item} or one per "
            f"{item} (or leave batch_size out to make one {item} per {label})"
        )
    return batch_size


class HubDiffusionPipeline(DiffusionPipeline):
    """A `DiffusionPipeline` whose components come from hf-vqvae: `from_pretrained` takes a folder or a Hub id, and
    `push_to_hub` uploads the folder with the card of `model_card`. Subclasses implement `model_card`.

    A saved folder also loads through diffusers' generic entry point, by the mechanism diffusers documents for
    pipelines and components defined outside diffusers (custom code): model_index.json names the pipeline and each
    hf-vqvae component by the module `hf_vqvae_entry`, a copy of which (a docstring and `from hf_vqvae import *`)
    sits at the root and in each component's folder, so `DiffusionPipeline.from_pretrained(folder or Hub id,
    trust_remote_code=True)` loads it. diffusers runs such code only with `trust_remote_code=True`; the package's own
    `from_pretrained` reads the class names and never runs a file of the folder.
    """

    push_commit_message = "Upload pipeline with hf-vqvae"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local pipeline folder or a Hub id (`loading.local_pipeline_folder`: diffusers refuses a
        third-party package's components by Hub id, so the snapshot is fetched first, honouring the cache and
        offline mode). Components can be replaced: `from_pretrained(path, prior=other_prior)`. A name that is
        no local folder and no reachable Hub id, or a folder missing a component, is an error that says which."""
        return super().from_pretrained(local_pipeline_folder(pretrained_model_name_or_path, kwargs), **kwargs)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """diffusers' `load_config`, with the entries of diffusers' generic loader read as the package's classes: the
        `_class_name` `[ENTRY_MODULE, class]` as the class name, and a component's `[ENTRY_MODULE, class]` as the
        module that defines it. So this class is what loads, its components come from the installed package, and
        no file of the folder is run."""
        loaded = super().load_config(*args, **kwargs)
        index = loaded[0] if isinstance(loaded, tuple) else loaded
        for name, entry in index.items():
            if name == "_class_name" and isinstance(entry, (list, tuple)):
                index[name] = entry[-1]
            elif isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] == ENTRY_MODULE:
                component_class = COMPONENT_CLASSES.get(entry[1])
                if component_class is None:
                    raise ValueError(
                        f"model_index.json names the component {name!r} as {entry[1]!r}, which the installed hf-vqvae "
                        f"does not define (saved by a later version? {INSTALL_COMMAND} --upgrade)"
                    )
                index[name] = [component_class.__module__, entry[1]]
        return loaded

    def to_json_string(self) -> str:
        """model_index.json, naming the pipeline and each hf-vqvae component by the entry module of diffusers'
        generic loader (`load_config` reads them back as the package's classes)."""
        index = json.loads(super().to_json_string())
        index["_class_name"] = [ENTRY_MODULE, type(self).__name__]
        for name in self._entry_components(index):
            index[name] = [ENTRY_MODULE, index[name][1]]
        return json.dumps(index, indent=2, sort_keys=True) + "\n"

    def save_config(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        """model_index.json and a copy of the entry module at the root and in each hf-vqvae component's folder."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        index = dict(self.config)
        for subfolder in [folder, *(folder / name for name in self._entry_components(index))]:
            if subfolder.is_dir():  # a component's folder exists once save_pretrained has saved the component
                (subfolder / f"{ENTRY_MODULE}.py").write_text(ENTRY_SOURCE)
        super().save_config(save_directory, push_to_hub=push_to_hub, **kwargs)

    @staticmethod
    def _entry_components(index: dict) -> list[str]:
        """The components of a model index (name -> [module, class]) that are classes of hf-vqvae."""
        return [
            name
            for name, entry in index.items()
            if not name.startswith("_") and isinstance(entry, (list, tuple)) and len(entry) == 2
            and isinstance(entry[0], str) and entry[0].split(".")[0] == "hf_vqvae"
            and COMPONENT_CLASSES.get(entry[1]) is not None
        ]

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
