import os
import shutil

import pytest
import torch

from hf_vqvae import VQVAEConfig, VQVAEModel
from hf_vqvae.layers import fused_steps, gated_pixelcnn, gated_pixelcnn_sampler, wavenet


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


def seeded(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator at `seed`: the same draws wherever a test passes it."""
    return torch.Generator().manual_seed(seed)


def compiled_steps_or_skip():
    """The compiled steps' library (`layers.fused_steps`); a skip on a machine without a C++ compiler, but a failure
    where one is found: a broken build or an unsafe cache must not pass for a machine without a compiler."""
    if not any(shutil.which(name) for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name):
        pytest.skip("no C++ compiler here: the cached samplers run their eager step only")
    library = fused_steps.load_library()
    assert library is not None, "a C++ compiler is here, but the compiled steps did not load: see the warning logged"
    return library


@pytest.fixture(params=["fused", "eager"])
def sampler_step(request, monkeypatch) -> str:
    """Runs a test with the cached samplers' compiled step and again with their eager step (`layers.fused_steps`)."""
    if request.param == "fused":
        compiled_steps_or_skip()
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1" if request.param == "fused" else "0")
    return request.param


@pytest.fixture
def every_step_on_all_threads(monkeypatch):
    """Every unit of a cached sampler (row, position, sample) on torch's thread count, however small: no trial, no
    one-thread threshold."""
    policy = gated_pixelcnn_sampler.ThreadPolicy
    monkeypatch.setattr(policy, "threads_for", lambda policy, unit: policy.threads)
    monkeypatch.setattr(policy, "record", lambda policy, unit, threads, seconds: None)
    for module in (gated_pixelcnn_sampler, wavenet):
        monkeypatch.setattr(module, "SINGLE_THREAD_STEP_MACS", 0)
        monkeypatch.setattr(module, "SINGLE_THREAD_FUSED_STEP_MACS", 0)


def record_drawn_logits(monkeypatch) -> list[torch.Tensor]:
    """A list that receives a copy of every (batch, K) logits a sampler draws from, in order, whichever step computed
    them: the plain samplers', the eager cached ones' or the compiled ones'."""
    recorded = []

    def recording(draw):
        return lambda logits, *args: recorded.append(logits.clone()) or draw(logits, *args)

    for module in (gated_pixelcnn, wavenet):
        monkeypatch.setattr(module, "draw_from_logits", recording(module.draw_from_logits))
    compiled_step = fused_steps.FusedStep.__call__

    def recording_step(step, position):
        compiled_step(step, position)
        recorded.append(step.logits.clone())

    monkeypatch.setattr(fused_steps.FusedStep, "__call__", recording_step)
    return recorded


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


def reset_accelerate_state() -> None:
    """Accelerate keeps its state per process; each in-process run starts from a clean one."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def fresh_accelerate_state():
    yield
    reset_accelerate_state()


@pytest.fixture
def image_folder(tmp_path):
    """48 small photos in two class folders, larger than the 16 px training crops."""
    import numpy as np
    import PIL.Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(24):
            gradient = np.linspace(0, 255, 24)[None, :, None] * rng.uniform(0.2, 1, 3)
            pixels = np.clip(gradient + rng.normal(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
            PIL.Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


@pytest.fixture
def tiny_vqvae_folder(tmp_path, tiny_config):
    """An untrained tiny VQ-VAE (16 px images, 4x4 grids of K=16 codes) saved with its image processor:
    its codes are as good as a trained one's for checking the plumbing."""
    from hf_vqvae import VQVAEImageProcessor

    folder = tmp_path / "vqvae"
    VQVAEModel(tiny_config).save_pretrained(folder)
    VQVAEImageProcessor(resolution=tiny_config.sample_size).save_pretrained(folder)
    return folder


@pytest.fixture
def recorded_dataset_uploads(monkeypatch):
    """Patch the HfApi calls of `Dataset(Dict).push_to_hub` on a new repository and of `upload_file`,
    so that a push records each commit's files (path in the repo -> bytes) instead."""
    from pathlib import Path
    from types import SimpleNamespace

    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    uploads = {"created": [], "commits": []}
    preuploaded = {}

    def repo_info(self, repo_id, **kwargs):
        if repo_id not in uploads["created"]:
            raise RepositoryNotFoundError(repo_id, response=SimpleNamespace(headers={}, request=None))
        return SimpleNamespace(id=repo_id, sha="0" * 40)

    def create_repo(self, repo_id, **kwargs):
        uploads["created"].append(repo_id)
        return SimpleNamespace(repo_id=repo_id)

    def preupload_lfs_files(self, repo_id, additions, **kwargs):
        # datasets deletes its temporary Parquet files once they are pre-uploaded.
        for addition in additions:
            preuploaded[addition.path_in_repo] = Path(addition.path_or_fileobj).read_bytes()

    def list_repo_tree(self, repo_id, path_in_repo=None, **kwargs):
        if path_in_repo:  # a new repository holds no folder
            raise EntryNotFoundError(path_in_repo)
        return iter([])

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for operation in operations:
            content = operation.path_or_fileobj
            files[operation.path_in_repo] = content if isinstance(content, bytes) else preuploaded[operation.path_in_repo]
        uploads["commits"].append({"repo_id": repo_id, "files": files, **kwargs})
        return SimpleNamespace(commit_url=f"https://hub.invalid/datasets/{repo_id}/commit/0", oid="1" * 40)

    for name, patch in (("repo_info", repo_info), ("create_repo", create_repo), ("preupload_lfs_files", preupload_lfs_files),
                        ("list_repo_tree", list_repo_tree), ("create_commit", create_commit)):
        monkeypatch.setattr(HfApi, name, patch)
    return uploads
