"""Validation shared by the package's configs: errors name the config, the field, the value and
what is allowed. And what every saved config carries so a reader can find the package."""

import math

from transformers import PreTrainedConfig

from .version import INSTALL_COMMAND, __version__


# `config.json` keys naming the package: transformers alone cannot load these models (their
# model types are registered by `import hf_vqvae`) and says only that it does not know the type.
PACKAGE_NAME = "hf-vqvae"
LOADING_HINT = f"{INSTALL_COMMAND}, then `import hf_vqvae` before AutoConfig/AutoModel.from_pretrained"


def _fail(config, name: str, allowed: str) -> None:
    raise ValueError(f"{type(config).__name__}.{name} must be {allowed}, got {getattr(config, name)!r}")


def check_integer_field(config, name: str, minimum: int, allowed: str) -> None:
    """Raise ValueError unless `config.<name>` is an integer >= `minimum` (`allowed` says so in words)."""
    value = getattr(config, name)
    # bool is a subclass of int, but `num_layers=True` is a mistake, not a number.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _fail(config, name, allowed)


def check_float_field(
    config,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> None:
    """Raise ValueError unless `config.<name>` is a finite real number (int or float, not bool or
    str) within the bounds given."""
    value = getattr(config, name)
    if minimum is not None and maximum is not None:
        low, high = "([" [not exclusive_minimum], ")]" [not exclusive_maximum]
        allowed = f"a finite number in {low}{minimum:g}, {maximum:g}{high}"
    elif minimum is not None:
        allowed = f"a finite number {'>' if exclusive_minimum else '>='} {minimum:g}"
    elif maximum is not None:
        allowed = f"a finite number {'<' if exclusive_maximum else '<='} {maximum:g}"
    else:
        allowed = "a finite number"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        _fail(config, name, allowed)
    if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
        _fail(config, name, allowed)
    if maximum is not None and (value > maximum or (exclusive_maximum and value == maximum)):
        _fail(config, name, allowed)


def check_bool_field(config, name: str) -> None:
    """Raise ValueError unless `config.<name>` is True or False (not "no", not 0)."""
    if not isinstance(getattr(config, name), bool):
        _fail(config, name, "True or False")


def check_choice_field(config, name: str, choices: tuple) -> None:
    """Raise ValueError unless `config.<name>` is one of `choices`."""
    value = getattr(config, name)
    if not isinstance(value, str) or value not in choices:
        _fail(config, name, f"one of {choices}")


PACKAGE_KEYS = ("library_name", "hf_vqvae_version", "loading_hint")


class PackageConfig(PreTrainedConfig):
    """A `PreTrainedConfig` whose `config.json` names the package that can load it
    (`library_name`, `hf_vqvae_version`, `loading_hint`): transformers' own error for an unknown
    model type only suggests upgrading transformers. Written on save, dropped on load (a
    reloaded config equals the one saved)."""

    def __post_init__(self, **kwargs):
        for key in PACKAGE_KEYS:
            kwargs.pop(key, None)
        super().__post_init__(**kwargs)

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "library_name": PACKAGE_NAME,
            "hf_vqvae_version": __version__,
            "loading_hint": LOADING_HINT,
        }


# The `VectorQuantizer` settings a model's config carries (see `VectorQuantizer.from_config`).
QUANTIZER_FIELDS = (
    "num_embeddings", "embedding_dim", "commitment_cost", "update_rule", "decay", "epsilon", "kmeans_init",
    "kmeans_iters", "dead_code_threshold",
)


def check_quantizer_fields(config) -> None:
    """Check the quantizer settings of any model's config (`QUANTIZER_FIELDS`), for type, range and finiteness."""
    from .quantization.vector_quantizer import UPDATE_RULES

    check_integer_field(config, "num_embeddings", 2, "an integer >= 2")
    check_integer_field(config, "embedding_dim", 1, "an integer >= 1")
    check_integer_field(config, "kmeans_iters", 0, "an integer >= 0")
    check_choice_field(config, "update_rule", UPDATE_RULES)
    check_float_field(config, "commitment_cost", minimum=0.0)
    check_float_field(config, "decay", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True)
    check_float_field(config, "epsilon", minimum=0.0, exclusive_minimum=True)
    check_bool_field(config, "kmeans_init")
    check_float_field(config, "dead_code_threshold", minimum=0.0)  # 0 disables restarts
