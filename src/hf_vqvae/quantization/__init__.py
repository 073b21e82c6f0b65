"""Vector quantization, shared by every modality."""

from .vector_quantizer import QuantizerOutput, VectorQuantizer


__all__ = ["QuantizerOutput", "VectorQuantizer"]
