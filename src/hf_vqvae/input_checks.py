"""Checks of what every model is given, written once: each error names the argument, the value found and what is
allowed. A model composes them in its own `_check_*` methods, which add what is particular to it (shapes, fields).

Checks that read tensor values (ranges, NaN) wait for the device and cannot be traced, so they are skipped while
`torch.export` or `torch.compile` traces the model; those that read shapes and dtypes always run.
"""

import math
import numbers

import numpy as np
import torch


# Values beyond this magnitude are not a signal scaled to [-1, 1] (0..255 pixels or 16-bit PCM stored as floats,
# say); a little overshoot (interpolation, augmentation, resampling) is fine.
SIGNAL_VALUE_LIMIT = 2.0


def is_tracing() -> bool:
    """Whether the model is being traced (`torch.export`, `torch.compile`): checks that look at tensor values
    would break the trace, so they are left out of it."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def is_integer_tensor(value) -> bool:
    """A tensor of integers (not floats, complex numbers or booleans)."""
    return isinstance(value, torch.Tensor) and not (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    )


def is_integer(value) -> bool:
    """A Python or numpy integer, not a bool (`speaker=True` is a mistake, not an id)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def describe(value) -> str:
    """A tensor's dtype, or a value's type name, for error messages."""
    return str(value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__


def check_not_empty(name: str, values: torch.Tensor, items: str) -> None:
    """Raise ValueError if `values` hold no item along the batch dimension: an empty batch has no loss to average
    (NaN) and nothing to generate."""
    if values.shape[0] == 0:
        raise ValueError(f"empty batch: {name} holds no {items} (batch size 0); pass at least one")


def check_same_batch(name: str, values: torch.Tensor, reference_name: str, reference: torch.Tensor) -> None:
    """Raise ValueError unless `values` has the batch size of `reference` (one per item, never broadcast)."""
    if values.shape[0] != reference.shape[0]:
        raise ValueError(
            f"batch size mismatch: {name} has batch size {values.shape[0]} but {reference_name} has "
            f"{reference.shape[0]}; they must be equal (nothing is broadcast)"
        )


def check_ids_in_range(requirement: str, ids: torch.Tensor, upper: int, field: str) -> None:
    """Raise ValueError unless every id lies in [0, upper); `requirement` starts the message ("`input_ids` must
    hold codes") and `field` names the config field giving `upper`. Skipped while tracing."""
    if is_tracing() or not ids.numel():
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= upper:
        raise ValueError(f"{requirement} in [0, {upper}) ({field}), got values in [{low}, {high}]")


def check_signal_values(
    name: str, values, *, kind: str, likely_cause: str, fix: str, training: bool = False
) -> None:
    """Raise ValueError if a signal meant to lie in [-1, 1] (pixels, audio samples; a tensor or a numpy array)
    holds NaN or Inf, or magnitudes above `SIGNAL_VALUE_LIMIT`. `kind` names what it is ("images"); for values too
    large, `likely_cause` guesses why ("0..255 pixels") and `fix` says how to scale them.

    Skipped while tracing, and in training off the CPU: looking at the values waits for the device, and in training
    the quantizer keeps non-finite statistics out of its EMA state without looking and the training loop stops on a
    non-finite loss."""
    is_tensor = isinstance(values, torch.Tensor)
    if is_tensor:
        if is_tracing() or (training and values.device.type != "cpu"):
            return
        values = values.detach()
    peak = float(values.abs().amax()) if is_tensor else float(np.abs(values).max())
    if not math.isfinite(peak):
        non_finite = int((~torch.isfinite(values)).sum()) if is_tensor else int((~np.isfinite(values)).sum())
        size = values.numel() if is_tensor else values.size
        raise ValueError(
            f"{name} hold {non_finite} NaN or Inf values (of {size}); {kind} must be finite floats in [-1, 1]"
        )
    if peak > SIGNAL_VALUE_LIMIT:
        raise ValueError(
            f"{name} must lie in [-1, 1], got values up to {peak:.4g} in magnitude ({likely_cause}?): {fix}"
        )


def check_code_grids(name: str, codes, num_embeddings: int, field: str, grid: tuple[int, int], grid_name: str) -> None:
    """Raise ValueError unless `codes` is an integer tensor of shape (batch_size >= 1, *grid) holding codes in
    [0, num_embeddings); `field` names the config field giving `num_embeddings`, `grid_name` the grid ("the
    stage-1 grid")."""
    if not is_integer_tensor(codes):
        raise ValueError(f"`{name}` must be an integer tensor of codes (e.g. torch.long), got {describe(codes)}")
    if codes.ndim != 3 or tuple(codes.shape[1:]) != tuple(grid):
        raise ValueError(f"`{name}` must have shape (batch_size, {grid[0]}, {grid[1]}) ({grid_name}), got {tuple(codes.shape)}")
    check_not_empty(f"`{name}`", codes, "code grids")
    check_ids_in_range(f"`{name}` must hold codes", codes, num_embeddings, field)


def checked_class_labels(class_labels, num_classes: int, batch_size: int, device) -> torch.LongTensor | None:
    """`class_labels` of a model over code grids as a (batch_size,) long tensor on `device`, or None for an
    unconditional model (num_classes=0), which refuses labels; a conditional one needs one label in
    [0, num_classes) per grid."""
    if num_classes == 0:
        if class_labels is not None:
            raise ValueError("class_labels were given to an unconditional prior (num_classes=0); pass None")
        return None
    if class_labels is None:
        raise ValueError(
            f"this prior is class-conditional (num_classes={num_classes}): pass class_labels, one label in "
            f"[0, {num_classes}) per grid"
        )
    class_labels = torch.as_tensor(class_labels, device=device)
    if not is_integer_tensor(class_labels):
        raise ValueError(f"class_labels must be integers, got {class_labels.dtype}")
    if tuple(class_labels.shape) != (batch_size,):
        raise ValueError(
            f"class_labels must have shape ({batch_size},), one label per grid, got {tuple(class_labels.shape)}"
        )
    check_ids_in_range("class_labels must lie", class_labels, num_classes, "num_classes")
    return class_labels.long()


def check_batch_size(batch_size) -> None:
    """Raise ValueError unless `batch_size` is an integer >= 1 (not a bool)."""
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_generator(generator, batch_size: int) -> None:
    """Raise ValueError unless `generator` is None, a torch.Generator, or a list of one torch.Generator per grid."""
    if isinstance(generator, (list, tuple)):
        if not all(isinstance(item, torch.Generator) for item in generator):
            raise ValueError(f"generator must be a torch.Generator or a list of them, got {generator!r}")
        if len(generator) != batch_size:
            raise ValueError(
                f"a list of generators must hold one per grid: got {len(generator)} for batch_size={batch_size}"
            )
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or a list of them, got {generator!r}")
