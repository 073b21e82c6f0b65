"""Validation shared by the package's configs: errors name the config, the field, the value and
what is allowed. And what every saved config carries so a reader can find the package."""

import math
from dataclasses import dataclass, fields

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


@dataclass(kw_only=True, repr=False)
class QuantizerConfigMixin:
    r"""
    The quantizer settings, one home for every model config that has a quantizer (`VQVAEConfig`,
    `AudioVQVAEConfig`, `HierarchicalVQVAEConfig` inherit them): `quantization.build_quantizer(config)` builds the
    quantizer they describe, and `check_quantizer_fields(config)` checks them. docs/quantizers.md compares the
    variants.

    Args:
        quantizer_type (`str`, defaults to `"vq"`): `"vq"` (the paper's `VectorQuantizer`, with the options below),
            `"residual_vq"` (N stages on residuals), `"simvq"` (codebook through a learned linear map), `"fsq"`
            (finite scalar quantization) or `"lfq"` (lookup-free quantization).
        num_embeddings (`int`, defaults to 512): K, the number of values of one code index (per stage for
            residual VQ); for FSQ the product of `fsq_levels`, for LFQ a power of two.
        embedding_dim (`int`, defaults to 64): D, the channels of the encoder output the quantizer reads.
        commitment_cost (`float`, defaults to 0.25): beta, the weight of the commitment term (vq, residual_vq,
            simvq, lfq).
        update_rule (`str`, defaults to `"ema"`): `"ema"` (appendix A.1) or `"loss"` (eq. 3); vq and residual_vq.
        decay (`float`, defaults to 0.99): gamma of the EMA updates, in (0, 1); vq and residual_vq.
        epsilon (`float`, defaults to 1e-5): Laplace smoothing of the EMA cluster sizes; vq and residual_vq.
        kmeans_init (`bool`, defaults to `True`): k-means initialisation of the codebook(s) on the first training
            batch; vq and residual_vq.
        kmeans_iters (`int`, defaults to 10): Lloyd iterations of that initialisation.
        dead_code_threshold (`float`, defaults to 0.5): codes whose usage average falls below this fraction of
            the mean of the codes' usage averages (latents per batch / K once settled) are re-seeded from encoder
            outputs with fresh EMA state; 0 disables restarts; vq and residual_vq.
        rotation_trick (`bool`, defaults to `False`): pass the gradient through the quantizer by the rotation
            trick (Fifty et al. 2024) instead of straight through; vq, residual_vq and simvq.
        cosine_similarity (`bool`, defaults to `False`): l2-normalised latents and codes (ViT-VQGAN); vq.
        codebook_dim (`int`, *optional*): look codes up in a space of this dimension, entered and left through
            learned linear maps (ViT-VQGAN's factorised codes); vq and residual_vq.
        num_quantizers (`int`, defaults to 1): N, the stages of residual VQ (at least 2); codes are
            (batch, N, ...), and the first k stages decode at a lower bitrate.
        quantizer_dropout (`float`, defaults to 0.0): residual VQ only: the probability that a training example
            uses only its first n stages, n uniform in [1, N] (SoundStream's quantizer dropout).
        fsq_levels (`list[int]`, *optional*): FSQ only (and required there): levels per code channel, each >= 3,
            e.g. `[8, 5, 5, 5]` (K = 1000).
        lfq_entropy_weight (`float`, defaults to 0.1), lfq_diversity_gamma (`float`, defaults to 1.0),
        lfq_temperature (`float`, defaults to 0.01): LFQ only: the weight of its entropy penalty, the weight of the
            batch entropy inside it, and the temperature of the code distribution.

    A field that does not apply to the chosen `quantizer_type` must keep its default (the paper's EMA settings
    excepted, which FSQ, LFQ and SimVQ ignore). A config saved before these fields existed loads as the paper's
    quantizer with the same settings.
    """

    quantizer_type: str = "vq"
    num_embeddings: int = 512
    embedding_dim: int = 64
    commitment_cost: float = 0.25
    update_rule: str = "ema"
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.5
    rotation_trick: bool = False
    cosine_similarity: bool = False
    codebook_dim: int | None = None
    num_quantizers: int = 1
    quantizer_dropout: float = 0.0
    fsq_levels: list[int] | None = None
    lfq_entropy_weight: float = 0.1
    lfq_diversity_gamma: float = 1.0
    lfq_temperature: float = 0.01

    @property
    def code_layout(self):
        """The codes' `quantization.CodeLayout`: values per index, and the stage axis of residual VQ."""
        from .quantization.code_layout import CodeLayout

        return CodeLayout(self.num_embeddings, self.num_quantizers if self.quantizer_type == "residual_vq" else None)

    def prior_code_grid(self, *spatial: int) -> tuple[int, ...]:
        """(classes, *grid) of the codes of `spatial` shape as a model over codes (a PixelCNN prior) sees them: K and
        the grid itself, or for residual VQ N * K classes on a grid N times wider (`CodeLayout.to_prior_grid`)."""
        layout = self.code_layout
        return (layout.prior_num_embeddings, *layout.prior_grid(*spatial))


# The settings a model's config carries for its quantizer (see `quantization.build_quantizer`).
QUANTIZER_FIELDS = tuple(field.name for field in fields(QuantizerConfigMixin))
# Those that configs of hf-vqvae 0.2.0 and before carry: the paper's quantizer.
PAPER_QUANTIZER_FIELDS = (
    "num_embeddings", "embedding_dim", "commitment_cost", "update_rule", "decay", "epsilon", "kmeans_init",
    "kmeans_iters", "dead_code_threshold",
)

# The variant settings and the quantizer types they apply to; with any other type they must keep their default.
VARIANT_FIELDS = {
    "rotation_trick": ("vq", "residual_vq", "simvq"),
    "cosine_similarity": ("vq",),
    "codebook_dim": ("vq", "residual_vq"),
    "num_quantizers": ("residual_vq",),
    "quantizer_dropout": ("residual_vq",),
    "fsq_levels": ("fsq",),
    "lfq_entropy_weight": ("lfq",),
    "lfq_diversity_gamma": ("lfq",),
    "lfq_temperature": ("lfq",),
}


def check_quantizer_fields(config) -> None:
    """Check the quantizer settings of any model's config (`QUANTIZER_FIELDS`): type, range and finiteness of each,
    the variant fields against `quantizer_type`, and K against the FSQ levels or LFQ bits."""
    from .quantization.factory import QUANTIZER_TYPES
    from .quantization.vector_quantizer import UPDATE_RULES

    check_choice_field(config, "quantizer_type", QUANTIZER_TYPES)
    check_integer_field(config, "num_embeddings", 2, "an integer >= 2")
    check_integer_field(config, "embedding_dim", 1, "an integer >= 1")
    check_integer_field(config, "kmeans_iters", 0, "an integer >= 0")
    check_choice_field(config, "update_rule", UPDATE_RULES)
    check_float_field(config, "commitment_cost", minimum=0.0)
    check_float_field(config, "decay", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True)
    check_float_field(config, "epsilon", minimum=0.0, exclusive_minimum=True)
    check_bool_field(config, "kmeans_init")
    check_float_field(config, "dead_code_threshold", minimum=0.0)  # 0 disables restarts
    check_bool_field(config, "rotation_trick")
    check_bool_field(config, "cosine_similarity")
    if config.codebook_dim is not None:
        check_integer_field(config, "codebook_dim", 1, "None or an integer >= 1")
    check_integer_field(config, "num_quantizers", 1, "an integer >= 1")
    check_float_field(config, "quantizer_dropout", minimum=0.0, maximum=1.0)
    check_float_field(config, "lfq_entropy_weight", minimum=0.0)
    check_float_field(config, "lfq_diversity_gamma", minimum=0.0)
    check_float_field(config, "lfq_temperature", minimum=0.0, exclusive_minimum=True)
    defaults = {field.name: field.default for field in fields(QuantizerConfigMixin)}
    for name, types in VARIANT_FIELDS.items():
        if config.quantizer_type not in types and getattr(config, name) != defaults[name]:
            _fail(config, name, f"{defaults[name]!r} with quantizer_type={config.quantizer_type!r} (it applies to {', '.join(types)})")
    if config.quantizer_type == "residual_vq":
        check_integer_field(config, "num_quantizers", 2, "an integer >= 2 with quantizer_type='residual_vq' (one stage is 'vq')")
    if config.quantizer_type == "fsq":
        _check_fsq_levels(config)
    if config.quantizer_type == "lfq" and config.num_embeddings & (config.num_embeddings - 1):
        _fail(config, "num_embeddings", "a power of two with quantizer_type='lfq' (log2 K sign bits per latent)")


def _check_fsq_levels(config) -> None:
    levels = config.fsq_levels
    if not isinstance(levels, (list, tuple)) or not levels or any(
        not isinstance(level, int) or isinstance(level, bool) or level < 3 for level in levels
    ):
        _fail(config, "fsq_levels", "a non-empty list of integers >= 3 with quantizer_type='fsq', e.g. [8, 5, 5, 5]")
    if config.num_embeddings != math.prod(levels):
        _fail(
            config, "num_embeddings",
            f"{math.prod(levels)}, the product of fsq_levels {list(levels)} (FSQ's codes are the grid of its levels)",
        )
