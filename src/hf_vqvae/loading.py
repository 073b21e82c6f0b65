"""What every load path shares: telling a missing local folder from a Hub id, resolving a pipeline's folder, and
naming the file or tensors at fault when what was found cannot be used."""

import json
from pathlib import Path

import torch
from huggingface_hub import snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open


def could_be_hub_id(name_or_path) -> bool:
    """Whether `name_or_path` has the form of a Hub repository id ("name" or "org/name")."""
    try:
        validate_repo_id(str(name_or_path))
    except HFValidationError:
        return False
    return True


def missing_folder_error(name_or_path, hub_error: Exception | None = None) -> FileNotFoundError:
    """The error for a name that is no local folder: it says so, and why it was not found on the
    Hub either when it could be a Hub id."""
    absolute = Path(name_or_path).expanduser().absolute()
    message = f"the folder {str(name_or_path)!r} does not exist (looked for {absolute})"
    if hub_error is not None:
        message += f", and as a Hub id it could not be loaded (offline, or no such repository?): {hub_error}"
    return FileNotFoundError(message)


def check_local_path_exists(name_or_path) -> None:
    """Raise a `missing_folder_error` for a name that can only be a local path (absolute, `./x`,
    `a/b/c`, ...) and does not exist, instead of letting it be looked up as a Hub id."""
    if not Path(name_or_path).expanduser().exists() and not could_be_hub_id(name_or_path):
        raise missing_folder_error(name_or_path)


def local_pipeline_folder(pretrained_model_name_or_path, kwargs: dict) -> str:
    """A pipeline's local folder: the path itself, or the snapshot of a Hub id.

    diffusers refuses components from a third-party package when given a Hub id, so the package's
    pipelines resolve it here with `snapshot_download` (which honours the cache and offline mode)
    and load the local folder. Pops the download arguments (`cache_dir`, `revision`, `token`,
    `local_files_only`) from `kwargs`, leaving those of `DiffusionPipeline.from_pretrained`.
    A name that is no local folder and no reachable Hub id, or a folder missing a component's subfolder,
    is an error that says which.
    """
    download_arguments = {name: kwargs.pop(name, None) for name in ("cache_dir", "revision", "token")}
    local_files_only = kwargs.pop("local_files_only", False)
    folder = Path(pretrained_model_name_or_path)
    if folder.is_file():
        raise NotADirectoryError(f"{folder} is a file; a pipeline is a folder with model_index.json")
    if not folder.is_dir():
        check_local_path_exists(pretrained_model_name_or_path)
        try:
            folder = Path(snapshot_download(
                str(pretrained_model_name_or_path), local_files_only=local_files_only, **download_arguments
            ))
        except (OSError, ValueError) as error:
            raise missing_folder_error(pretrained_model_name_or_path, error) from error
    check_pipeline_components(folder, passed=kwargs)
    return str(folder)


def check_pipeline_components(folder: Path, passed: dict) -> None:
    """Raise naming the component whose subfolder is missing (diffusers names only the root folder)."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a pipeline folder: it has no model_index.json (a model folder loads with its model "
            "class's from_pretrained)"
        )
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{index_path} is damaged (not valid JSON): {error}") from error
    for name, entry in index.items():
        if name.startswith("_") or name in passed or not isinstance(entry, list) or entry[0] is None:
            continue
        if not (folder / name).is_dir():
            raise FileNotFoundError(
                f"the pipeline folder {folder} has no {name}/ subfolder: model_index.json lists the component "
                f"{name!r} ({entry[1]}); copy that folder back or pass {name}=... to from_pretrained"
            )


def _unreadable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():
                weights.get_tensor(key)
    except Exception:  # any failure to read is what we are looking for
        return True
    return False


def damaged_weights_error(name_or_path, error: Exception, subfolder: str | None = None, cache_dir=None) -> OSError:
    """An error naming the safetensors file(s) of `name_or_path` that cannot be read."""
    folder = Path(name_or_path) / (subfolder or "")
    if folder.is_dir():
        candidates = sorted(folder.glob("*.safetensors"))
    else:
        filename = f"{subfolder}/model.safetensors" if subfolder else "model.safetensors"
        cached = try_to_load_from_cache(str(name_or_path), filename, cache_dir=cache_dir)
        candidates = [Path(cached)] if isinstance(cached, str) else []
    damaged = [str(path) for path in candidates if _unreadable(path)] or [f"the weights of {str(name_or_path)!r}"]
    return OSError(
        f"damaged or truncated safetensors file: {', '.join(damaged)} ({error}); save or download it again"
    )


def non_finite_tensors(module: torch.nn.Module) -> list[str]:
    """Names of the module's floating-point parameters and buffers holding NaN or Inf."""
    return [
        name
        for name, tensor in module.state_dict().items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
    ]
