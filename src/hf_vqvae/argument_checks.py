"""Checks of a command's settings, shared by the data's and the training's argument groups: each raises a
`ValueError` that names the flag, what it must be and the value it got, so a value from the command line, a file or
Python fails the same way."""

import argparse
import math


def check_at_least(group, name: str, minimum: float, *, optional: bool = False) -> None:
    """Raise a `ValueError` naming the flag unless `group.<name>` >= `minimum` (None allowed when `optional`)."""
    value = getattr(group, name)
    if optional and value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < minimum:
        raise ValueError(f"--{name} must be >= {minimum}, got {value!r}")


def check_in_range(group, name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise a `ValueError` naming the flag unless `group.<name>` lies in the interval from `low` to `high`."""
    value = getattr(group, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"--{name} must lie in {interval}, got {value!r}")


def check_choice(group, name: str, choices: tuple) -> None:
    """Raise a `ValueError` naming the flag unless `group.<name>` is one of `choices`."""
    value = getattr(group, name)
    if value not in choices:
        raise ValueError(f"--{name} must be one of {list(choices)}, got {value!r}")


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` of an argparse command line that keeps its description's layout and ends each optional flag's
    description with its default, as the HfArgumentParser-based commands do (a required flag has none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.required else super()._get_help_string(action)
