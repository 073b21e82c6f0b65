"""HierarchicalVQVAEModel (the stage-2 model over stage-1 codes) under every contract of tests/model_contracts.py."""

import torch

from hf_vqvae import HierarchicalVQVAEModel

from model_contracts import ModelContracts, ModelTester, assert_input_embeddings_are
from test_hierarchy import TINY_STAGE2


class HierarchicalVQVAEModelTester(ModelTester):
    model_class = HierarchicalVQVAEModel
    config_fields = TINY_STAGE2
    has_quantizer = True
    per_item_fields = ("logits", "latent_indices")
    # encoder: the embedded codes, conv_in, each downsampling, z_e; decoder: the embedded codes and each gated layer
    hidden_states = {
        "encoder_hidden_states": TINY_STAGE2["encoder_num_downsamples"] + 3,
        "decoder_hidden_states": TINY_STAGE2["decoder_num_layers"] + 1,
    }
    code_input = "input_ids"

    def inputs(self, batch_size=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return {"input_ids": torch.randint(0, TINY_STAGE2["input_num_embeddings"], (batch_size, 4, 4), generator=generator)}


class TestHierarchicalVQVAEModel(ModelContracts):
    tester = HierarchicalVQVAEModelTester()

    def test_input_embeddings_are_the_decoder_code_embedding(self):
        model = self.tester.model()
        assert_input_embeddings_are(model, model.get_input_embeddings(), self.tester.inputs())
