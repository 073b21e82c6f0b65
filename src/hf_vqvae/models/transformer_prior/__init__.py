from .configuration_transformer_prior import DEFAULT_DECODER, TransformerPriorConfig
from .modeling_transformer_prior import TransformerPriorModel, TransformerPriorOutput


__all__ = ["DEFAULT_DECODER", "TransformerPriorConfig", "TransformerPriorModel", "TransformerPriorOutput"]
