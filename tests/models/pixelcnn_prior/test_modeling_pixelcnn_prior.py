"""PixelCNNPriorModel, class-conditional and unconditional, under every contract of tests/model_contracts.py."""

import torch

from hf_vqvae import PixelCNNPriorModel

from model_contracts import ModelContracts, ModelTester, assert_input_embeddings_are


TINY_PRIOR = dict(num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)


class PixelCNNPriorModelTester(ModelTester):
    model_class = PixelCNNPriorModel
    config_fields = {**TINY_PRIOR, "num_classes": 3}
    per_item_fields = ("logits",)
    hidden_states = {"hidden_states": TINY_PRIOR["num_layers"] + 1}  # the embedded input and each gated layer
    code_input = "input_ids"

    def inputs(self, batch_size=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        inputs = {"input_ids": torch.randint(0, 16, (batch_size, 4, 4), generator=generator)}
        if self.config_fields.get("num_classes"):
            inputs["class_labels"] = torch.randint(0, self.config_fields["num_classes"], (batch_size,), generator=generator)
        return inputs

    def training_inputs(self, inputs):
        return inputs | {"labels": inputs["input_ids"]}


class UnconditionalPixelCNNPriorModelTester(PixelCNNPriorModelTester):
    config_fields = TINY_PRIOR


class TestPixelCNNPriorModel(ModelContracts):
    tester = PixelCNNPriorModelTester()

    def test_input_embeddings_are_the_code_embedding(self):
        model = self.tester.model()
        assert_input_embeddings_are(model, model.pixelcnn.code_embedding, self.tester.inputs())


class TestUnconditionalPixelCNNPriorModel(TestPixelCNNPriorModel):
    tester = UnconditionalPixelCNNPriorModelTester()
