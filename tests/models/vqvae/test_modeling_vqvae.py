"""VQVAEModel under every contract of tests/model_contracts.py."""

import torch

from hf_vqvae import VQVAEModel

from conftest import TINY_VQVAE
from model_contracts import ModelContracts, ModelTester


class VQVAEModelTester(ModelTester):
    model_class = VQVAEModel
    config_fields = TINY_VQVAE
    has_quantizer = True
    per_item_fields = ("reconstruction", "indices")
    # encoder: conv_in, 2 downsamplings, the residual block, the stack's ReLU, z_e; decoder: conv_in, the block, the
    # ReLU, 2 upsamplings
    hidden_states = {"encoder_hidden_states": 6, "decoder_hidden_states": 5}
    float_input = "pixel_values"

    def inputs(self, batch_size=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return {"pixel_values": torch.rand(batch_size, 3, 16, 16, generator=generator) * 2 - 1}


class TestVQVAEModel(ModelContracts):
    tester = VQVAEModelTester()
