"""Quantization, shared by every modality: the paper's vector quantizer and the variants beside it, one interface
(`Quantizer`), chosen by a model config's `quantizer_type` (`build_quantizer`)."""

from .base import Quantizer, QuantizerOutput
from .code_layout import CodeLayout
from .factory import QUANTIZER_TYPES, build_quantizer
from .finite_scalar import FiniteScalarQuantizer
from .lookup_free import LookupFreeQuantizer
from .residual import ResidualVectorQuantizer
from .sim_vq import SimVectorQuantizer
from .vector_quantizer import VectorQuantizer


__all__ = [
    "QUANTIZER_TYPES",
    "CodeLayout",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "SimVectorQuantizer",
    "VectorQuantizer",
    "build_quantizer",
]
