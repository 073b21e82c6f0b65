"""What the two VQ-VAE recipes (images: `recipes.vqvae`, speech: `recipes.audio_vqvae`) share: a config from
--preset / --model_config_name_or_path and --config_overrides, and the scalars logged at every update."""

import dataclasses
import types
import typing

from ..models.vqvae.configuration_vqvae import VQVAEConfig
from .checkpoints import model_fields


def parse_config_overrides(overrides: list[str], config_class: type = VQVAEConfig) -> dict:
    """`["hidden_channels=64", "update_rule=loss", "fsq_levels=8,5,5,5", "codebook_dim=none"]` -> typed values for the
    fields of `config_class` that hold a number, a string, a bool, a list of integers (comma-separated) or any of these
    or None ("none")."""
    fields = {field.name: _override_kinds(field.type) for field in dataclasses.fields(config_class)}
    fields = {name: kinds for name, kinds in fields.items() if kinds}
    parsed = {}
    for override in overrides:
        name, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides takes FIELD=VALUE pairs, got {override!r}")
        if name not in fields:
            raise ValueError(
                f"--config_overrides: {name!r} is not a {config_class.__name__} field; the fields are {sorted(fields)}"
            )
        kind, optional = fields[name]
        if optional and text.lower() == "none":
            parsed[name] = None
        elif kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--config_overrides: {name} takes true or false, got {text!r}")
            parsed[name] = text.lower() == "true"
        else:
            try:
                parsed[name] = [int(item) for item in text.split(",")] if kind is list else kind(text)
            except ValueError as error:
                what = "comma-separated list of integers" if kind is list else kind.__name__
                raise ValueError(f"--config_overrides: {name} takes a {what}, got {text!r}") from error
    return parsed


def _override_kinds(annotation) -> tuple[type, bool] | None:
    """(the type a FIELD=VALUE text is parsed as, whether "none" is allowed) for a config field's annotation; None for
    fields the overrides cannot set."""
    arguments = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    optional = type(None) in arguments
    kinds = [argument for argument in arguments if argument is not type(None)]
    if len(kinds) != 1:
        return None
    kind = typing.get_origin(kinds[0]) or kinds[0]
    if kind is list and typing.get_args(kinds[0]) != (int,):
        return None
    return (kind, optional) if kind in (int, float, str, bool, list) else None


def base_config_fields(config_class: type, preset: str | None, config_name_or_path: str | None, overrides: list[str],
                       cache_dir: str | None = None) -> dict:
    """The fields of the config --preset names (`config_class.from_preset`), else of --model_config_name_or_path,
    else the defaults, with --config_overrides applied."""
    if preset:
        base = config_class.from_preset(preset)
    elif config_name_or_path:
        base = config_class.from_pretrained(config_name_or_path, cache_dir=cache_dir)
    else:
        base = config_class()
    return {**model_fields(base), **parse_config_overrides(overrides, config_class)}


def vqvae_train_logs(output) -> dict:
    return {
        "train/loss": output.loss.item(),
        "train/reconstruction_loss": output.reconstruction_loss.item(),
        "train/commitment_loss": output.commitment_loss.item(),
        "train/perplexity": output.perplexity.item(),
    }
