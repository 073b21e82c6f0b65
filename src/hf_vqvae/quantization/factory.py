"""The quantizer a model's config names: one call for every model (`build_quantizer(config)`)."""

from .base import Quantizer
from .finite_scalar import FiniteScalarQuantizer
from .lookup_free import LookupFreeQuantizer
from .residual import ResidualVectorQuantizer
from .sim_vq import SimVectorQuantizer
from .vector_quantizer import VectorQuantizer, paper_settings


# `quantizer_type` values: the paper's VQ (with its options), and the variants.
QUANTIZER_TYPES = ("vq", "residual_vq", "simvq", "fsq", "lfq")


def build_quantizer(config) -> Quantizer:
    """The quantizer of a config carrying `configuration_utils.QUANTIZER_FIELDS` (checked by
    `check_quantizer_fields`); a config saved before `quantizer_type` existed builds the paper's `VectorQuantizer`."""
    quantizer_type = getattr(config, "quantizer_type", "vq")
    if quantizer_type == "vq":
        return VectorQuantizer.from_config(config)
    if quantizer_type == "residual_vq":
        return ResidualVectorQuantizer(
            num_embeddings=config.num_embeddings,
            embedding_dim=config.embedding_dim,
            num_quantizers=config.num_quantizers,
            quantizer_dropout=config.quantizer_dropout,
            codebook_dim=config.codebook_dim,
            rotation_trick=config.rotation_trick,
            **paper_settings(config),
        )
    if quantizer_type == "simvq":
        return SimVectorQuantizer(
            num_embeddings=config.num_embeddings,
            embedding_dim=config.embedding_dim,
            commitment_cost=config.commitment_cost,
            rotation_trick=config.rotation_trick,
        )
    if quantizer_type == "fsq":
        return FiniteScalarQuantizer(levels=config.fsq_levels, embedding_dim=config.embedding_dim)
    if quantizer_type == "lfq":
        return LookupFreeQuantizer(
            num_embeddings=config.num_embeddings,
            embedding_dim=config.embedding_dim,
            commitment_cost=config.commitment_cost,
            entropy_weight=config.lfq_entropy_weight,
            diversity_gamma=config.lfq_diversity_gamma,
            temperature=config.lfq_temperature,
        )
    raise ValueError(f"quantizer_type must be one of {QUANTIZER_TYPES}, got {quantizer_type!r}")
