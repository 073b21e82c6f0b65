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
