"""What every load path shares: telling a missing local folder from a Hub id, and naming the file
or tensors at fault when what was found cannot be used."""

from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
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
