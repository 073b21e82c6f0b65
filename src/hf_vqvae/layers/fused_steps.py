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
processor, and moved into place whole, so concurrent processes never load half a file. It takes about a second.
"""

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_steps.cpp")
FLAGS = ["-O3", "-std=c++17", "-pthread", "-shared", "-fPIC"]
DISABLE_VARIABLE = "HF_VQVAE_FUSED_STEPS"


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


def _compile(compiler: str, flags: list[str], target: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".building-", suffix=".so", delete=False) as staged:
        staged_path = Path(staged.name)
    try:
        subprocess.run(
            [compiler, *flags, str(SOURCE), "-o", str(staged_path)], check=True, capture_output=True, text=True
        )
        os.replace(staged_path, target)
    finally:
        staged_path.unlink(missing_ok=True)


@functools.cache
def load_library() -> ctypes.CDLL | None:
    """The compiled steps, building them if this machine has none yet; None (with one warning) where that fails."""
    compiler = next(
        (found for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name and (found := shutil.which(name))),
        None,
    )
    if compiler is None:
        logger.warning(
            "No C++ compiler found ($CXX, c++, g++, clang++): the cached samplers run their eager step, several times "
            "slower at small batches. Install one (e.g. `apt-get install g++`) for the fused step."
        )
        return None
    source = SOURCE.read_bytes()
    errors = []
    for flags in ([*FLAGS, "-march=native"], FLAGS):
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(), _processor().encode()]))
        target = cache_directory() / f"fused_steps-{key.hexdigest()[:16]}.so"
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                _compile(compiler, flags, target)
            library = ctypes.CDLL(str(target))
        except (OSError, subprocess.CalledProcessError) as error:
            errors.append(f"{' '.join(flags)}: {getattr(error, 'stderr', None) or error}")
            continue
        for name, structure in (("pixelcnn_row", PixelCNNStep), ("pixelcnn_step", PixelCNNStep),
                                ("wavenet_step", WaveNetStep)):
            function = getattr(library, name)
            function.argtypes, function.restype = [ctypes.POINTER(structure), ctypes.c_int64], None
        return library
    logger.warning(
        "Compiling the fused sampler steps (%s) failed, so the cached samplers run their eager step, several times "
        "slower at small batches:\n%s",
        SOURCE.name,
        "\n".join(errors),
    )
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
