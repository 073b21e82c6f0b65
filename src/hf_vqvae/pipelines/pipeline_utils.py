"""What the package's pipelines share: loading from a Hub id."""

import os
from pathlib import Path

from huggingface_hub import snapshot_download


def local_pipeline_folder(pretrained_model_name_or_path: str | os.PathLike, loading_kwargs: dict) -> str | os.PathLike:
    """A local pipeline folder as is; a Hub id resolved to a local snapshot with `snapshot_download`, which honours
    the cache and offline mode (diffusers refuses components from a third-party package when given a Hub id).
    Pops the download arguments (`cache_dir`, `revision`, `token`, `local_files_only`) from `loading_kwargs`."""
    if Path(pretrained_model_name_or_path).is_dir():
        return pretrained_model_name_or_path
    return snapshot_download(
        str(pretrained_model_name_or_path),
        cache_dir=loading_kwargs.pop("cache_dir", None),
        revision=loading_kwargs.pop("revision", None),
        token=loading_kwargs.pop("token", None),
        local_files_only=loading_kwargs.pop("local_files_only", False),
    )
