"""What the two VQ-VAE recipes (images: `recipes.vqvae`, speech: `recipes.audio_vqvae`) share: a config from
--preset / --model_config_name_or_path and --config_overrides, and the scalars logged at every update."""

import dataclasses

from ..models.vqvae.configuration_vqvae import VQVAEConfig
from .checkpoints import model_fields


def parse_config_overrides(overrides: list[str], config_class: type = VQVAEConfig) -> dict:
    """`["hidden_channels=64", "update_rule=loss"]` -> typed values for the scalar fields of `config_class`."""
    fields = {
        field.name: field.type for field in dataclasses.fields(config_class) if field.type in (int, float, str, bool)
    }
    parsed = {}
    for override in overrides:
        name, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides takes FIELD=VALUE pairs, got {override!r}")
        if name not in fields:
            raise ValueError(
                f"--config_overrides: {name!r} is not a {config_class.__name__} field; the fields are {sorted(fields)}"
            )
        kind = fields[name]
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--config_overrides: {name} takes true or false, got {text!r}")
            parsed[name] = text.lower() == "true"
        else:
            try:
                parsed[name] = kind(text)
            except ValueError as error:
                raise ValueError(f"--config_overrides: {name} takes a {kind.__name__}, got {text!r}") from error
    return parsed


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
