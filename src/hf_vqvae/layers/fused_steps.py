"""The compiled steps of the cached samplers (`fused_steps.cpp`): built once per machine at first use, called through
ctypes.

A cached sampler's step at batch 1 to 16 is tens to hundreds of small tensor operations, and in eager torch each
costs a few microseconds whatever its size; the compiled step is one call that costs the step's arithmetic and the
reading of its weights, the draw included (the caller takes the uniform numbers from its generator, in the order
the plain samplers take them). A sampler describes its step once per draw (its buffers, the sizes and the weights
laid out as row-major (inputs, outputs) matrices, kept between draws by `prepared_weights`; the structures below
mirror the C++ ones field by field) and calls it once per position, or row, with the thread count its
`ThreadPolicy` chose. The samplers use it for float32 tensors on the CPU; anything else, or a machine without a
working C++ compiler, runs the eager step, which draws the same codes (`HF_VQVAE_FUSED_STEPS=0` asks for it).

The library is built with the first C++ compiler found (`$CXX`, `c++`, `g++`, `clang++`), for this machine's
processor (`-march=native`, then without it if that fails), into `$HF_VQVAE_CACHE/fused_steps/` (default
`~/.cache/hf_vqvae`, or under `$XDG_CACHE_HOME`), named by a hash of the source, the compiler, the flags and the
processor. It takes about a second. Loading a library runs its code, and its name is a hash anyone can compute, so
the cache is guarded:
- folders are created 0700 and files 0600; a folder or file that another user owns or that group or others can
  write, or a symbolic link, is refused with a warning (the eager step runs), since another user could have planted
  a library there;
- a library is loaded only where its bytes match the SHA-256 written beside it after the build that made it; a
  truncated or foreign file is built again (with a warning where a checksum was there and does not match);
- one process builds at a time (a lock on the folder), in a private temporary folder, and moves the library into
  place whole, so concurrent processes never load half a file.
"""

import contextlib
import ctypes
import errno
import functools
import hashlib
import logging
import os
import platform
import secrets
import shutil
import stat
import subprocess
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_steps.cpp")
FLAGS = ["-O3", "-std=c++17", "-pthread", "-shared", "-fPIC"]
DISABLE_VARIABLE = "HF_VQVAE_FUSED_STEPS"
CHECKSUM_SUFFIX = ".sha256"
EAGER = "the cached samplers run their eager step, several times slower at small batches"


class UnsafeCacheError(Exception):
    """A cache folder or file that another user owns or could write, or a symbolic link: never loaded from."""

    def __init__(self, path: Path, kind: str, problem: str):
        remedy = (
            "make the folder private (`chmod 700`, owned by you, not a link) or set HF_VQVAE_CACHE to a folder only "
            "you can write" if kind == "folder" else "remove it, and the next sample builds the library again"
        )
        super().__init__(f"the {kind} {path} {problem}, so another user could have planted a library there: {remedy}")


def cache_directory() -> Path:
    if "HF_VQVAE_CACHE" in os.environ:
        return Path(os.environ["HF_VQVAE_CACHE"]) / "fused_steps"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hf_vqvae" / "fused_steps"


def _processor() -> str:
    """What `-march=native` depends on: the processor's model and feature flags (Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    keys = ("model name", "flags", "Features", "CPU part")
    return platform.machine() + "".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def _check_private(descriptor: int, path: Path, kind: str) -> None:
    """Refuse a `kind` ("folder" or "file") that another user owns or could have written."""
    status = os.fstat(descriptor)
    if not (stat.S_ISDIR if kind == "folder" else stat.S_ISREG)(status.st_mode):
        raise UnsafeCacheError(path, kind, f"is not a {'folder' if kind == 'folder' else 'regular file'}")
    if status.st_uid != os.geteuid():
        raise UnsafeCacheError(path, kind, f"is owned by uid {status.st_uid}, not by this user (uid {os.geteuid()})")
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheError(path, kind, f"is writable by group or others (mode {stat.S_IMODE(status.st_mode):o})")


def _open_not_following_links(path: Path, kind: str, flags: int, directory: int | None = None) -> int:
    """`os.open` that refuses a symbolic link; `path` in the folder `directory` where one is given."""
    try:
        return os.open(path.name if directory is not None else path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=directory)  # fmt: skip
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.ENOTDIR and os.path.islink(path)):
            raise UnsafeCacheError(path, kind, "is a symbolic link") from None
        raise


def _open_cache_directory(folder: Path) -> int:
    """A descriptor of the cache folder, created (with its missing parents) as 0700. Refused where it is a symbolic
    link, another user's, or writable by group or others; every file below is opened through the descriptor, so the
    folder cannot be swapped for another between the check and the use."""
    for missing in reversed([folder, *folder.parents]):
        if not os.path.lexists(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(missing, 0o700)
    directory = _open_not_following_links(folder, "folder", os.O_RDONLY | os.O_DIRECTORY)
    try:
        _check_private(directory, folder, "folder")
    except BaseException:
        os.close(directory)
        raise
    return directory


def _open_private(directory: int, path: Path) -> BinaryIO | None:
    """The cache file `path` (in the folder `directory`) open for reading, None where there is none; refused where it
    is a symbolic link, another user's, or writable by group or others."""
    try:
        file = os.fdopen(_open_not_following_links(path, "file", os.O_RDONLY, directory), "rb")
    except FileNotFoundError:
        return None
    try:
        _check_private(file.fileno(), path, "file")
    except BaseException:
        file.close()
        raise
    return file


def _unverified(directory: int, path: Path) -> str | None:
    """Why the library `path` cannot be loaded as it is ("is missing", or its bytes do not match the checksum written
    beside it when it was built); None where it can."""
    library = _open_private(directory, path)
    if library is None:
        return "is missing"
    with library:
        checksum = _open_private(directory, path.with_name(path.name + CHECKSUM_SUFFIX))
        if checksum is None:
            return "has no checksum beside it"
        with checksum:
            expected = checksum.read(256).decode(errors="replace").strip()
        if hashlib.sha256(library.read()).hexdigest() != expected:
            return "does not match the checksum written when it was built (truncated or replaced since)"
    return None


def _write_atomically(directory: int, name: str, data: bytes) -> None:
    """`data` into the cache file `name`, private (0600), synced, then renamed into place whole."""
    staged = f".building-{secrets.token_hex(8)}-{name}"
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=directory)  # fmt: skip
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staged, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged, dir_fd=directory)
        raise


def _build(compiler: str, flags: list[str], directory: int, path: Path) -> None:
    """Compile into a private temporary folder, then write the library into the cache and its checksum beside it."""
    with tempfile.TemporaryDirectory(prefix="hf_vqvae-fused-steps-") as private:
        built = Path(private) / path.name
        subprocess.run([compiler, *flags, str(SOURCE), "-o", str(built)], check=True, capture_output=True, text=True)
        library = built.read_bytes()
    _write_atomically(directory, path.name, library)
    _write_atomically(directory, path.name + CHECKSUM_SUFFIX, hashlib.sha256(library).hexdigest().encode())


@contextlib.contextmanager
def _building(directory: int):
    """Held while one process checks and builds a library (a lock on the cache folder): the others wait, then find it
    built and verified."""
    import fcntl  # POSIX only, like the rest of the cache

    fcntl.flock(directory, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(directory, fcntl.LOCK_UN)


def _load(directory: int, path: Path) -> ctypes.CDLL:
    """Load the verified library through the folder's descriptor where the system allows it (Linux's /proc), so that
    the folder cannot be swapped for another between the check and the load."""
    through_descriptor = f"/proc/self/fd/{directory}/{path.name}"
    return ctypes.CDLL(through_descriptor if os.path.exists(through_descriptor) else str(path))


def _load_or_build(compiler: str, flags: list[str], directory: int, path: Path) -> ctypes.CDLL:
    """The library `path`, verified, built first where it is missing or fails verification (one process at a time)."""
    if _unverified(directory, path) is not None:
        with _building(directory):
            why_not = _unverified(directory, path)
            if why_not is not None:
                if why_not.startswith("does not match"):
                    logger.warning("The cached library of the fused sampler steps %s %s: building it again.", path, why_not)
                _build(compiler, flags, directory, path)
                why_not = _unverified(directory, path)
                if why_not is not None:
                    raise OSError(f"{path} {why_not} right after it was built")
    return _load(directory, path)


def _load_any(compiler: str, directory: int, folder: Path) -> ctypes.CDLL:
    """The library of the first flags that build and load (`-march=native`, then without it), its functions declared;
    an OSError that says why each failed where none does."""
    source = SOURCE.read_bytes()
    errors = []
    for flags in ([*FLAGS, "-march=native"], FLAGS):
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(), _processor().encode()]))
        try:
            library = _load_or_build(compiler, flags, directory, folder / f"fused_steps-{key.hexdigest()[:16]}.so")
            for name, structure in (("pixelcnn_row", PixelCNNStep), ("pixelcnn_step", PixelCNNStep),
                                    ("wavenet_step", WaveNetStep)):  # fmt: skip
                function = getattr(library, name)
                function.argtypes, function.restype = [ctypes.POINTER(structure), ctypes.c_int64], None
            return library
        except (OSError, subprocess.CalledProcessError, AttributeError) as error:
            errors.append(f"{' '.join(flags)}: {getattr(error, 'stderr', None) or error}")
    raise OSError("\n".join(errors))


@functools.cache
def load_library() -> ctypes.CDLL | None:
    """The compiled steps, building them if this machine has none yet; None (with one warning) where that fails or
    the cache is not safe to load from."""
    if os.name != "posix":
        logger.warning("The fused sampler steps are built on POSIX systems only: %s.", EAGER)
        return None
    compiler = next(
        (found for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name and (found := shutil.which(name))),
        None,
    )
    if compiler is None:
        logger.warning(
            "No C++ compiler found ($CXX, c++, g++, clang++): %s. Install one (e.g. `apt-get install g++`) for the "
            "fused step.", EAGER,
        )
        return None
    folder = cache_directory()
    try:
        directory = _open_cache_directory(folder)
        try:
            return _load_any(compiler, directory, folder)
        finally:
            os.close(directory)
    except UnsafeCacheError as refusal:
        logger.warning("Not loading the fused sampler steps: %s. %s.", refusal, EAGER.capitalize())
    except OSError as error:
        logger.warning("Building the fused sampler steps (%s) into %s failed, so %s:\n%s", SOURCE.name, folder, EAGER, error)
    return None


def usable_for(*tensors: torch.Tensor) -> bool:
    """Whether a sampler whose weights and inputs are `tensors` runs the compiled step: all float32 on the CPU, a
    compiled library, and `HF_VQVAE_FUSED_STEPS` not 0."""
    if any(tensor.device.type != "cpu" or tensor.dtype != torch.float32 for tensor in tensors):
        return False
    if os.environ.get(DISABLE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return load_library() is not None


_prepared = weakref.WeakKeyDictionary()


def prepared_weights(module: torch.nn.Module, prepare: Callable[[torch.nn.Module], dict]) -> dict:
    """`prepare(module)`: a module's weights laid out for a compiled step, kept between draws and made again only
    when a parameter changed (in place, which moves its version counter, or replaced, which moves its storage).
    Laying out the weights of a 15-layer, 64-channel PixelCNN takes about 10 ms, a fifth of drawing a 16x16 grid."""
    try:
        key = tuple((parameter.data_ptr(), parameter._version) for parameter in module.parameters())
    except RuntimeError:  # inference-mode tensors keep no version counter: lay the weights out for every draw
        with torch.no_grad():
            return prepare(module)
    entry = _prepared.get(module)
    if entry is None or entry[0] != key:
        with torch.no_grad():
            entry = (key, prepare(module))
        _prepared[module] = entry
    return entry[1]


def matrix_with_bias(conv: torch.nn.Conv1d | torch.nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution as the contiguous (in + 1, out) matrix a compiled product reads for inputs followed by a
    constant 1 (the bias last)."""
    return torch.cat([conv.weight.flatten(1), conv.bias[:, None]], dim=1).t().contiguous()


def output_weights(skips: list, hidden: torch.nn.Module, logits: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Both samplers' output layers as `FusedStep.output_layers` reads them: every layer's skip convolution stacked
    into one (layers * (in + 1), skip channels) matrix, and the two 1x1 output convolutions as (in, out) matrices
    with their biases."""
    return {
        "skip": torch.cat([matrix_with_bias(conv) for conv in skips]),
        "output_hidden": (hidden.weight.flatten(1).t().contiguous(), hidden.bias),
        "output_logits": (logits.weight.flatten(1).t().contiguous(), logits.bias),
    }


def _pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    if tensor.dtype not in (torch.float32, torch.int64) or tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError(
            f"a fused step reads contiguous float32 or int64 CPU tensors, got a {'' if tensor.is_contiguous() else 'non-'}"
            f"contiguous {tensor.dtype} tensor on {tensor.device}"
        )
    return ctypes.c_void_p(tensor.data_ptr())


_Float = ctypes.c_void_p  # a pointer to a tensor's data (float32, or int64 for codes)
_Int = ctypes.c_int64


class OutputLayers(ctypes.Structure):
    _fields_ = [
        ("gated_width", _Int), ("skip_channels", _Int), ("classes", _Int),
        ("skip_weight", _Float), ("hidden_weight", _Float), ("hidden_bias", _Float),
        ("logits_weight", _Float), ("logits_bias", _Float),
        ("skips", _Float), ("hidden", _Float), ("logits", _Float), ("cdf", _Float), ("uniform", _Float),
        ("temperature", ctypes.c_float),
    ]  # fmt: skip


class PixelCNNStep(ctypes.Structure):
    _fields_ = [
        ("batch", _Int), ("channels", _Int), ("kernel", _Int), ("layers", _Int), ("height", _Int), ("width", _Int),
        ("bias_rows", _Int), ("threads", _Int), ("step_threads", _Int), ("embedding", _Float), ("codes", _Float),
        ("rings", _Float), ("columns", _Float), ("vertical_weights", _Float), ("vertical_biases", _Float),
        ("vertical_gate_biases", _Float), ("vertical_pre_activation", _Float), ("vertical_to_horizontal", _Float),
        ("horizontal_biases", _Float), ("to_horizontal", _Float),
        ("inputs", _Float), ("horizontal_weights", _Float), ("residual_weights", _Float),
        ("gated", _Float), ("pre_activation", _Float), ("output", OutputLayers),
    ]  # fmt: skip


class WaveNetBlockStep(ctypes.Structure):
    _fields_ = [
        ("kernel", _Int), ("dilation", _Int), ("history", _Int), ("frames", _Int),
        ("taps", _Float), ("slots", _Float), ("bias_frames", _Float), ("residual_weight", _Float),
    ]  # fmt: skip


class WaveNetStep(ctypes.Structure):
    _fields_ = [
        ("batch", _Int), ("residual_channels", _Int), ("gate_channels", _Int), ("blocks", _Int), ("hop", _Int),
        ("length", _Int), ("threads", _Int), ("embedding", _Float), ("samples", _Float), ("block", ctypes.POINTER(WaveNetBlockStep)), ("inputs", _Float), ("gated", _Float), ("products", _Float),
        ("pre_activation", _Float), ("output", OutputLayers),
    ]  # fmt: skip


class FusedStep:
    """One sampler's compiled step, called as `step(position)`. It keeps every tensor its description points into, so
    that none is freed while it is in use. Tensors are given contiguous: buffers are the sampler's own, written in
    place; weights are contiguous (inputs, outputs) copies the sampler makes."""

    def __init__(self):
        self.kept = []

    def structure(self, structure: type[ctypes.Structure], **fields) -> ctypes.Structure:
        """A description (of the output layers, a WaveNet block, the step) whose tensors this step keeps alive."""
        values = {}
        for name, value in fields.items():
            if isinstance(value, torch.Tensor):
                self.kept.append(value)
                value = _pointer(value) if value.numel() else None
            values[name] = value
        described = structure(**values)
        self.kept.append(described)
        return described

    def array(self, structure: type[ctypes.Structure], descriptions: list[ctypes.Structure]):
        """A pointer to the first of `descriptions` laid out one after the other (a C array), kept alive here."""
        array = (structure * len(descriptions))(*descriptions)
        self.kept.append(array)
        return ctypes.cast(array, ctypes.POINTER(structure))

    def output_layers(
        self, weights: dict, buffers: tuple[torch.Tensor, torch.Tensor, torch.Tensor], uniform: torch.Tensor
    ) -> OutputLayers:
        """Both samplers' output layers and draw: the skips of every layer (inputs: every layer's gated activations,
        each followed by a constant 1), a hidden layer and the logits layer, from `weights` laid out by
        `output_weights`; `buffers` are the (skips, hidden, logits) the step writes, `uniform` the (batch, 1) uniform
        numbers the caller writes before each step. The temperature is set on the result before a draw."""
        skip_weight, hidden, logits = weights["skip"], weights["output_hidden"], weights["output_logits"]
        gated_width, skip_channels = skip_weight.shape
        classes = logits[0].shape[1]
        self.logits = buffers[2]  # what the last step drew from
        return self.structure(
            OutputLayers, gated_width=gated_width, skip_channels=skip_channels, classes=classes,
            skip_weight=skip_weight, hidden_weight=hidden[0], hidden_bias=hidden[1],
            logits_weight=logits[0], logits_bias=logits[1],
            skips=buffers[0], hidden=buffers[1], logits=buffers[2],
            cdf=torch.empty(uniform.shape[0], classes, dtype=torch.float32), uniform=uniform, temperature=1.0,
        )  # fmt: skip

    def bind(self, function_name: str, structure: type[ctypes.Structure], **fields) -> "FusedStep":
        self.description = self.structure(structure, **fields)
        self.function = getattr(load_library(), function_name)
        self.reference = ctypes.byref(self.description)
        return self

    def function_named(self, name: str):
        """Another function of the library that reads the same description (the PixelCNN's row)."""
        return getattr(load_library(), name)

    def __call__(self, position: int) -> None:
        self.function(self.reference, position)
