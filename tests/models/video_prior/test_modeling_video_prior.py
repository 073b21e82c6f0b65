"""VideoPriorModel (the action-conditioned prior over frames' codes) under every contract of tests/model_contracts.py."""

import torch

from hf_vqvae import VideoPriorModel

from model_contracts import ModelContracts, ModelTester, assert_input_embeddings_are
from test_video_prior import TINY_VIDEO_PRIOR


PREDICTED_FRAMES = 2


class VideoPriorModelTester(ModelTester):
    model_class = VideoPriorModel
    config_fields = TINY_VIDEO_PRIOR
    per_item_fields = ("logits",)
    hidden_states = {"hidden_states": TINY_VIDEO_PRIOR["num_layers"] + 1}  # the embedded codes and each gated layer
    hidden_batch_factor = PREDICTED_FRAMES  # the PixelCNN's layout: each predicted frame is an item of its batch
    code_input = "input_ids"

    def inputs(self, batch_size=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        frames = TINY_VIDEO_PRIOR["context_frames"] + PREDICTED_FRAMES
        return {
            "input_ids": torch.randint(0, TINY_VIDEO_PRIOR["num_embeddings"], (batch_size, frames, 4, 4), generator=generator),
            "actions": torch.randint(0, TINY_VIDEO_PRIOR["num_actions"], (batch_size, PREDICTED_FRAMES), generator=generator),
        }

    def training_inputs(self, inputs):
        return inputs | {"labels": inputs["input_ids"]}


class TestVideoPriorModel(ModelContracts):
    tester = VideoPriorModelTester()

    def test_input_embeddings_are_the_code_embedding(self):
        model = self.tester.model()
        assert_input_embeddings_are(model, model.get_input_embeddings(), self.tester.inputs())
