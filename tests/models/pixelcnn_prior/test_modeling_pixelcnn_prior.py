"""PixelCNNPriorModel, class-conditional and unconditional, under every contract of tests/model_contracts.py."""

from hf_vqvae import PixelCNNPriorModel

from model_contracts import CodeGridPriorTester, ModelContracts, assert_input_embeddings_are


TINY_PRIOR = dict(num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)


class PixelCNNPriorModelTester(CodeGridPriorTester):
    model_class = PixelCNNPriorModel
    config_fields = {**TINY_PRIOR, "num_classes": 3}
    hidden_states = {"hidden_states": TINY_PRIOR["num_layers"] + 1}  # the embedded input and each gated layer


class UnconditionalPixelCNNPriorModelTester(PixelCNNPriorModelTester):
    config_fields = TINY_PRIOR


class TestPixelCNNPriorModel(ModelContracts):
    tester = PixelCNNPriorModelTester()

    def test_input_embeddings_are_the_code_embedding(self):
        model = self.tester.model()
        assert_input_embeddings_are(model, model.pixelcnn.code_embedding, self.tester.inputs())


class TestUnconditionalPixelCNNPriorModel(TestPixelCNNPriorModel):
    tester = UnconditionalPixelCNNPriorModelTester()
