"""Configuration of the transformer prior over VQ-VAE code grids: a causal language model of transformers (a Llama by
default) over the codes in raster order, after one prefix token for the class label."""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ...configuration_utils import PackageConfig, check_float_field, check_integer_field


# The decoder of a config that names none: a small Llama (about 6.3M parameters at K = 512), sized like the
# PixelCNN prior's defaults. A `decoder_config` given as a dict without `model_type` is a Llama too, with
# LlamaConfig's own defaults for the fields it leaves out.
DEFAULT_DECODER = dict(
    hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
    attention_dropout=0.0,
)


class TransformerPriorConfig(PackageConfig):
    r"""
    Configuration of [`TransformerPriorModel`]: a causal language model of transformers (`decoder_config`, a Llama by
    default) over the codes of a VQ-VAE's code grid in raster order, as VQGAN's transformer, LlamaGen and Chameleon
    model image codes. The sequence starts with one prefix token: the class label for a class-conditional prior (a
    speaker, for speech codes), or the null label, which an unconditional prior always starts with and a conditional
    one is trained on in place of the label a `class_dropout_prob` share of the time, so that it also models the codes
    unconditionally and can sample with classifier-free guidance.

    Token ids: codes `[0, num_embeddings)`, class labels `num_embeddings + label`, the null label
    `num_embeddings + num_classes`. The decoder's `vocab_size` (`num_embeddings + num_classes + 1`) and
    `max_position_embeddings` (`1 + grid_height * grid_width`) follow from these fields and are set here, as are its
    special tokens (none: every sequence has the grid's length).

    Args:
        num_embeddings (`int`, *optional*, defaults to 512):
            Number of codes K, the VQ-VAE's codebook size. The prior predicts K logits per position.
        grid_height (`int`, *optional*, defaults to 32):
            Height of the code grid (the VQ-VAE's latent height; 1 for a sequence of speech codes).
        grid_width (`int`, *optional*, defaults to 32):
            Width of the code grid.
        num_classes (`int`, *optional*, defaults to 0):
            Number of class labels to condition on; 0 makes the prior unconditional.
        class_dropout_prob (`float`, *optional*, defaults to 0.1):
            In training, the share of grids whose class label is replaced by the null label (label dropout), in
            [0, 1). Classifier-free guidance (`sample(guidance_scale=...)`) needs it above 0.
        decoder_config (`dict` or `PreTrainedConfig`, *optional*):
            The causal language model's config: any model type `AutoModelForCausalLM` builds (`LlamaConfig`,
            `GPT2Config`, ...), or a dict of one (a Llama when it names no `model_type`). Defaults to a Llama with
            `DEFAULT_DECODER`'s fields.
    """

    model_type = "hf_vqvae_transformer_prior"
    sub_configs_defaults = {
        "decoder_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=DEFAULT_DECODER)
    }

    num_embeddings: int = 512
    grid_height: int = 32
    grid_width: int = 32
    num_classes: int = 0
    class_dropout_prob: float = 0.1
    decoder_config: dict | PreTrainedConfig | None = None

    def __post_init__(self, **kwargs):
        check_integer_field(self, "num_embeddings", 2, "an integer >= 2")
        check_integer_field(self, "grid_height", 1, "a positive integer")
        check_integer_field(self, "grid_width", 1, "a positive integer")
        check_integer_field(self, "num_classes", 0, "a non-negative integer (0 = unconditional)")
        check_float_field(self, "class_dropout_prob", minimum=0.0, maximum=1.0, exclusive_maximum=True)
        if self.decoder_config is not None and not isinstance(self.decoder_config, (dict, PreTrainedConfig)):
            raise ValueError(
                "TransformerPriorConfig.decoder_config must be a causal language model's config (e.g. a LlamaConfig) "
                f"or a dict of one, got {type(self.decoder_config).__name__}"
            )
        super().__post_init__(**kwargs)
        decoder = self.decoder_config
        if decoder.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or decoder.is_encoder_decoder:
            raise ValueError(
                "TransformerPriorConfig.decoder_config must be the config of a decoder-only model that "
                f"AutoModelForCausalLM builds (e.g. 'llama', 'gpt2'), got model_type {decoder.model_type!r}"
            )
        decoder.vocab_size = self.vocab_size
        decoder.max_position_embeddings = self.sequence_length
        decoder.bos_token_id = decoder.eos_token_id = decoder.pad_token_id = None
        # Causal language models of encoder families (BertLMHeadModel, ...) attend causally only as decoders; the
        # flag is unused by decoder-only families.
        decoder.is_decoder = True

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the decoder's output layer is its token embedding: the decoder's own field
        (`decoder_config.tie_word_embeddings`, False for a Llama), read and set here as on a model that owns its output
        layer, so that `TransformerPriorConfig(tie_word_embeddings=True)` and transformers' tools that set the field on
        the model's config tie the decoder. It lives in the decoder's config only, so folders keep one source of it."""
        return bool(self.decoder_config.tie_word_embeddings)

    @tie_word_embeddings.setter
    def tie_word_embeddings(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"TransformerPriorConfig.tie_word_embeddings must be True or False, got {value!r}")
        self.decoder_config.tie_word_embeddings = value

    @property
    def vocab_size(self) -> int:
        """The decoder's vocabulary: the codes, a token per class label and the null label."""
        return self.num_embeddings + self.num_classes + 1

    @property
    def null_label_id(self) -> int:
        """The token of the null label: the prefix of an unconditional prior, and of a dropped class label."""
        return self.num_embeddings + self.num_classes

    @property
    def sequence_length(self) -> int:
        """The prefix token and the grid's codes."""
        return 1 + self.grid_height * self.grid_width


__all__ = ["DEFAULT_DECODER", "TransformerPriorConfig"]
