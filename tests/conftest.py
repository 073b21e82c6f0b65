import pytest
import torch

from hf_vqvae import VQVAEConfig, VQVAEModel


TINY_VQVAE = dict(
    hidden_channels=16, residual_channels=8, num_residual_blocks=1, num_embeddings=16, embedding_dim=4, sample_size=16
)


@pytest.fixture(autouse=True)
def _single_thread_and_seed():
    """Small tensors run fastest on one thread, and every test starts from the same seed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> VQVAEConfig:
    return VQVAEConfig(**TINY_VQVAE)


@pytest.fixture
def tiny_model(tiny_config) -> VQVAEModel:
    return VQVAEModel(tiny_config)


def put_in_hub_cache(cache_dir, repo_id: str, folder) -> None:
    """Lay out `folder` as huggingface_hub's cache holds a downloaded snapshot of `repo_id`:
    `models--org--name/refs/main` names a commit, `snapshots/<commit>/` holds the files."""
    import shutil
    from pathlib import Path

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo_dir / "snapshots" / commit, dirs_exist_ok=True)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hub cache and offline mode: anything not in the cache fails instead of downloading."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache_dir = tmp_path / "hub-cache"
    cache_dir.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache_dir))
    return cache_dir


@pytest.fixture
def recorded_uploads(monkeypatch):
    """Patch HfApi so a push records what it would upload (file names and bytes) instead."""
    from pathlib import Path
    from types import SimpleNamespace

    from huggingface_hub import HfApi

    uploads = []

    def create_repo(self, repo_id, **kwargs):
        uploads.append({"create_repo": repo_id, **kwargs})
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {
            str(path.relative_to(folder_path)): path.read_bytes()
            for path in sorted(Path(folder_path).rglob("*"))
            if path.is_file()
        }
        uploads.append({"repo_id": repo_id, "files": files, **kwargs})
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/0")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return uploads
