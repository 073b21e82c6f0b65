"""Vector quantization, shared by every modality."""

from .base import Quantizer, QuantizerOutput
from .vector_quantizer import VectorQuantizer


__all__ = ["Quantizer", "QuantizerOutput", "VectorQuantizer"]
