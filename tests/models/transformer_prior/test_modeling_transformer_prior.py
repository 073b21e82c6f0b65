"""TransformerPriorModel, class-conditional and unconditional, under every contract of tests/model_contracts.py."""

from hf_vqvae import TransformerPriorModel

from model_contracts import CodeGridPriorTester, ModelContracts, assert_input_embeddings_are


TINY_PRIOR = dict(
    num_embeddings=16, grid_height=4, grid_width=4,
    decoder_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2),
)


class TransformerPriorModelTester(CodeGridPriorTester):
    model_class = TransformerPriorModel
    # Label dropout draws from the global random state in training, so two training passes differ; the contracts
    # compare such passes (gradient checkpointing), and tests/test_transformer_prior.py tests the dropout itself.
    config_fields = {**TINY_PRIOR, "num_classes": 3, "class_dropout_prob": 0.0}
    hidden_states = {"hidden_states": TINY_PRIOR["decoder_config"]["num_hidden_layers"] + 1}  # embeddings and each layer
    attention_layers = TINY_PRIOR["decoder_config"]["num_hidden_layers"]
    ties_word_embeddings = True


class UnconditionalTransformerPriorModelTester(TransformerPriorModelTester):
    config_fields = TINY_PRIOR


class TestTransformerPriorModel(ModelContracts):
    tester = TransformerPriorModelTester()

    def test_input_embeddings_are_the_decoders_token_embedding(self):
        model = self.tester.model()
        assert_input_embeddings_are(model, model.decoder.get_input_embeddings(), self.tester.inputs())


class TestUnconditionalTransformerPriorModel(TestTransformerPriorModel):
    tester = UnconditionalTransformerPriorModelTester()
