"""The compiled steps of the cached samplers (`layers/fused_steps`): built once per machine into a private cache,
loaded only from files this user made and whose checksum matches (never from a damaged, foreign or planted library),
refused cleanly where no compiler works or the cache cannot be used (the samplers then run their eager step and draw
the same codes), and always reading the model's current weights. That they draw what the plain samplers draw is tested with each sampler (the
`sampler_step` fixture runs those tests with the compiled step and with the eager one)."""

import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from hf_vqvae.layers import fused_steps
from hf_vqvae.layers.gated_pixelcnn import GatedPixelCNN
from hf_vqvae.layers.wavenet import WaveNet

from conftest import compiled_steps_or_skip


COMPILER = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """`load_library` as on a machine that never built it: an empty cache folder, nothing loaded yet."""
    monkeypatch.setenv("HF_VQVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    fused_steps.load_library.cache_clear()
    yield tmp_path / "cache" / "fused_steps"
    fused_steps.load_library.cache_clear()


@pytest.fixture(scope="module")
def template_cache(tmp_path_factory):
    """A cache folder where the library was built, built once for the tests that damage a copy."""
    folder = tmp_path_factory.mktemp("template") / "fused_steps"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_VQVAE_CACHE", str(folder.parent))
        fused_steps.load_library.cache_clear()
        try:
            compiled_steps_or_skip()
        finally:
            fused_steps.load_library.cache_clear()
    return folder


@pytest.fixture
def built_library(fresh_library, template_cache):
    """`fresh_library`'s folder with the library built (a private copy of `template_cache`)."""
    shutil.copytree(template_cache, fresh_library)
    os.chmod(fresh_library.parent, 0o700)
    return fresh_library


def built_files(folder):
    """The library and its checksum in a cache folder where one was built."""
    (library,) = folder.glob("fused_steps-*.so")
    return library, library.with_name(library.name + ".sha256")


def mode(path) -> int:
    return os.stat(path, follow_symlinks=False).st_mode & 0o777


@pytest.fixture(scope="module")
def planted_library(tmp_path_factory):
    """(a foreign shared library, the file its constructor creates when it is loaded): what an attacker plants."""
    if not COMPILER:
        pytest.skip("no C++ compiler here")
    folder = tmp_path_factory.mktemp("planted")
    marker = folder / "planted-library-ran"
    source = folder / "planted.cpp"
    source.write_text(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void planted() { close(open(MARKER, O_CREAT | O_WRONLY, 0600)); }\n"
    )
    library = folder / "planted.so"
    subprocess.run([COMPILER, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(source), "-o", str(library)], check=True,
                   timeout=120)  # fmt: skip
    return library, marker


def plant(library, target):
    """Put `library` under the cached name `target`, with a checksum that matches it."""
    shutil.copyfile(library, target)
    target.with_name(target.name + ".sha256").write_text(hashlib.sha256(library.read_bytes()).hexdigest())
    os.chmod(target, 0o600)
    os.chmod(target.with_name(target.name + ".sha256"), 0o600)


def tiny_pixelcnn(dtype=torch.float32):
    torch.manual_seed(0)
    pixelcnn = GatedPixelCNN(16, 8, 3, 3, 12, num_classes=3).to(dtype).eval()
    with torch.no_grad():  # sharper logits than the default initialisation's, so the codes depend on the context
        for parameter in pixelcnn.parameters():
            parameter.mul_(3)
    return pixelcnn


def sample(pixelcnn, use_cache=True, seed=3):
    labels = torch.tensor([0, 2])
    return pixelcnn.sample(2, 5, 6, class_labels=labels, generator=torch.Generator().manual_seed(seed), use_cache=use_cache)


def test_the_library_is_built_once_into_a_private_cache_and_then_loaded_from_it(fresh_library, monkeypatch):
    umask = os.umask(0o002)  # a common user umask: new files group-writable unless the cache says otherwise
    try:
        compiled_steps_or_skip()
    finally:
        os.umask(umask)
    library, checksum = built_files(fresh_library)
    assert sorted(path.name for path in fresh_library.iterdir()) == [library.name, checksum.name]
    # Folders created 0700 (the missing parent too), files 0600, whatever the umask: no other user can plant a file.
    assert [mode(folder) for folder in (fresh_library.parent, fresh_library)] == [0o700, 0o700]
    assert {mode(path) for path in fresh_library.iterdir()} == {0o600}
    modified = os.stat(library).st_mtime_ns
    fused_steps.load_library.cache_clear()

    def no_compiling(*args, **kwargs):
        raise AssertionError("the cached library was compiled again")

    monkeypatch.setattr(fused_steps, "_build", no_compiling)
    assert fused_steps.load_library() is not None
    assert os.stat(library).st_mtime_ns == modified


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_without_a_working_compiler_sampling_warns_once_and_runs_the_eager_step(
    fresh_library, monkeypatch, caplog, compiler
):
    pixelcnn = tiny_pixelcnn()
    expected = sample(pixelcnn, use_cache=False)
    if compiler == "missing":
        monkeypatch.setattr(fused_steps.shutil, "which", lambda name: None)
    else:  # a compiler that exits with an error, whatever the flags
        monkeypatch.setenv("CXX", "false")
    with caplog.at_level(logging.WARNING, logger=fused_steps.__name__):
        assert torch.equal(sample(pixelcnn), expected)
        assert torch.equal(sample(pixelcnn), expected)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "eager step" in warnings[0]
    assert ("No C++ compiler" in warnings[0]) == (compiler == "missing")
    assert not fused_steps.usable_for(pixelcnn.code_embedding.weight)
    assert not any(fresh_library.glob("*.so*"))


def test_the_compiled_step_runs_for_float32_cpu_weights_only_and_when_not_switched_off(monkeypatch):
    compiled_steps_or_skip()
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    assert fused_steps.usable_for(torch.zeros(1))
    assert not fused_steps.usable_for(torch.zeros(1, dtype=torch.float64))
    assert not fused_steps.usable_for(torch.zeros(1, dtype=torch.bfloat16))
    assert not fused_steps.usable_for(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
    for off in ("0", "false", "off"):
        monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, off)
        assert not fused_steps.usable_for(torch.zeros(1))


def test_a_float64_model_samples_through_the_eager_step_and_matches_plain_sampling(monkeypatch):
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    pixelcnn = tiny_pixelcnn(torch.float64)
    assert torch.equal(sample(pixelcnn), sample(pixelcnn, use_cache=False))


def test_sampling_in_inference_mode_reads_the_current_weights(monkeypatch):
    """Inference-mode parameters keep no version counter: their layout is made for every draw."""
    compiled_steps_or_skip()
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    with torch.inference_mode():
        pixelcnn = tiny_pixelcnn()
        before = sample(pixelcnn)
        pixelcnn.output_logits.weight.mul_(-1)
        after = sample(pixelcnn)
        assert not torch.equal(after, before) and torch.equal(after, sample(pixelcnn, use_cache=False))


@pytest.mark.parametrize("model", ["pixelcnn", "wavenet"])
def test_the_compiled_step_reads_weights_changed_since_the_last_draw(monkeypatch, model):
    """The laid-out weights are kept between draws; an in-place update (an optimizer step) or a replaced parameter
    makes the next draw lay them out again."""
    compiled_steps_or_skip()
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    if model == "pixelcnn":
        network = tiny_pixelcnn()
        draw = lambda use_cache: sample(network, use_cache)  # noqa: E731
    else:
        torch.manual_seed(0)
        network = WaveNet(256, 8, 8, 8, num_layers=4, dilation_cycle=2, global_channels=3).eval()
        speaker = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
        draw = lambda use_cache: network.generate(  # noqa: E731
            2, 40, None, speaker, generator=torch.Generator().manual_seed(3), use_cache=use_cache
        )
    before = draw(True)
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    for parameter in network.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    after = draw(True)
    assert not torch.equal(after, before)
    assert torch.equal(after, draw(False))
    with torch.no_grad():  # a parameter replaced, not changed in place
        first = next(network.parameters())
        first.data = first.data * -1
    assert torch.equal(draw(True), draw(False))


def load_in_a_subprocess(cache) -> subprocess.CompletedProcess:
    """`load_library()` in a fresh process (a damaged library could kill the one that loads it), printing whether the
    compiled steps loaded; its log on stderr."""
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING);"
        "from hf_vqvae.layers import fused_steps; print(fused_steps.load_library() is not None)"
    )
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_VQVAE_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_truncated_library_is_rebuilt_with_one_warning(built_library):
    library, checksum = built_files(built_library)
    whole = library.read_bytes()
    library.write_bytes(whole[:1000])  # a crash or a full disk while it was written

    loaded = load_in_a_subprocess(built_library.parent)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "True", loaded.stderr
    warnings = [line for line in loaded.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "does not match the checksum written when it was built" in warnings[0], loaded.stderr
    assert str(library) in warnings[0]
    assert hashlib.sha256(library.read_bytes()).hexdigest() == checksum.read_text() == hashlib.sha256(whole).hexdigest()


@pytest.mark.parametrize("checksum", ["the genuine build's", "none"])
def test_a_foreign_library_under_the_cached_name_is_never_loaded_but_rebuilt(
    built_library, planted_library, caplog, checksum
):
    pixelcnn = tiny_pixelcnn()
    foreign, marker = planted_library
    library, checksum_file = built_files(built_library)
    genuine = library.read_bytes()
    shutil.copyfile(foreign, library)
    if checksum == "none":
        checksum_file.unlink()
    fused_steps.load_library.cache_clear()
    with caplog.at_level(logging.WARNING, logger=fused_steps.__name__):
        assert torch.equal(sample(pixelcnn), sample(pixelcnn, use_cache=False))
    assert not marker.exists(), "the planted library's constructor ran"
    assert fused_steps.usable_for(pixelcnn.code_embedding.weight)
    assert library.read_bytes() == genuine
    # A checksum that does not match is worth a warning; a library with none is simply built again.
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == (checksum != "none")
    assert all("does not match the checksum" in warning for warning in warnings)


def give_to_another_user(path, monkeypatch):
    """`path` owned by another user: really (as root), else as `os.fstat` reports it to the cache."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534, follow_symlinks=False)
        return
    inode = os.stat(path, follow_symlinks=False).st_ino
    real_fstat = os.fstat

    def fstat(descriptor):
        status = real_fstat(descriptor)
        if status.st_ino != inode:
            return status
        fields = list(status)
        fields[4] = status.st_uid + 1  # st_uid
        return os.stat_result(fields)

    monkeypatch.setattr(fused_steps.os, "fstat", fstat)


UNSAFE_CACHES = {
    # case: (what is done to the cache, where a genuine library plus a planted one sit, what the warning says)
    "world-writable folder": (lambda folder, library, monkeypatch: os.chmod(folder, 0o777), "writable by group or others (mode 777)"),
    "group-writable folder": (lambda folder, library, monkeypatch: os.chmod(folder, 0o770), "writable by group or others (mode 770)"),
    "folder of another user": (lambda folder, library, monkeypatch: give_to_another_user(folder, monkeypatch), "is owned by uid"),
    "group-writable library": (lambda folder, library, monkeypatch: os.chmod(library, 0o660), "writable by group or others (mode 660)"),
    "library of another user": (lambda folder, library, monkeypatch: give_to_another_user(library, monkeypatch), "is owned by uid"),
}


@pytest.mark.parametrize("case", [*UNSAFE_CACHES, "symlinked folder", "symlinked library"])
def test_a_cache_another_user_could_write_is_refused_with_one_warning_and_the_eager_step(
    built_library, planted_library, monkeypatch, caplog, case
):
    """A planted library with a checksum that matches it: only the owner and mode checks, and not following links,
    keep it from running in this process."""
    pixelcnn = tiny_pixelcnn()
    foreign, marker = planted_library
    library, checksum = built_files(built_library)
    if case.startswith("symlinked"):
        elsewhere = built_library.parent / "elsewhere"
        shutil.copytree(built_library, elsewhere)
        os.chmod(elsewhere, 0o700)
        plant(foreign, elsewhere / library.name)
        if case == "symlinked folder":
            shutil.rmtree(built_library)
            built_library.symlink_to(elsewhere)
        else:
            library.unlink()
            library.symlink_to(elsewhere / library.name)
            shutil.copyfile(elsewhere / checksum.name, checksum)
        expected_warning = "is a symbolic link"
    else:
        make_unsafe, expected_warning = UNSAFE_CACHES[case]
        plant(foreign, library)
        make_unsafe(built_library, library, monkeypatch)
    fused_steps.load_library.cache_clear()
    with caplog.at_level(logging.WARNING, logger=fused_steps.__name__):
        assert torch.equal(sample(pixelcnn), sample(pixelcnn, use_cache=False))
        assert not fused_steps.usable_for(pixelcnn.code_embedding.weight)
    assert not marker.exists(), "the planted library's constructor ran"
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and expected_warning in warnings[0] and "eager step" in warnings[0], warnings
    assert ("folder" in case) == ("HF_VQVAE_CACHE to a folder only you can write" in warnings[0])


@pytest.mark.parametrize("failure", ["read-only", "full disk"])
def test_a_cache_that_cannot_be_written_runs_the_eager_step_and_leaves_no_partial_file(
    fresh_library, monkeypatch, caplog, failure
):
    if failure == "read-only":  # root writes into read-only folders: the file system's refusal is simulated
        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(fused_steps.os, "mkdir", refuse)
    else:  # a full disk fails the writes, at the latest when they are synced
        def full(descriptor):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(fused_steps.os, "fsync", full)
        fresh_library.mkdir(parents=True, mode=0o700)
        os.chmod(fresh_library.parent, 0o700)
    pixelcnn = tiny_pixelcnn()
    if not COMPILER:
        pytest.skip("no C++ compiler here")
    with caplog.at_level(logging.WARNING, logger=fused_steps.__name__):
        assert torch.equal(sample(pixelcnn), sample(pixelcnn, use_cache=False))
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "eager step" in warnings[0]
    assert ("Read-only file system" if failure == "read-only" else "No space left on device") in warnings[0]
    assert not fused_steps.usable_for(pixelcnn.code_embedding.weight)
    assert not fresh_library.exists() or not any(fresh_library.iterdir())


def test_processes_building_at_the_same_time_share_one_build(fresh_library):
    """Concurrent first samples: one process builds while the others wait for it, and none loads a partial file."""
    if not COMPILER:
        pytest.skip("no C++ compiler here")
    code = "from hf_vqvae.layers import fused_steps; print(fused_steps.load_library() is not None)"
    environment = {**os.environ, "HF_VQVAE_CACHE": str(fresh_library.parent)}
    processes = [
        subprocess.Popen([sys.executable, "-c", code], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)  # fmt: skip
        for _ in range(2)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0 and stdout.strip() == "True" and "WARNING" not in stderr, stderr
    library, checksum = built_files(fresh_library)
    assert hashlib.sha256(library.read_bytes()).hexdigest() == checksum.read_text()
    assert not list(fresh_library.glob(".building-*"))
