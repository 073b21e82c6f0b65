"""AudioVQVAEModel, with speakers and without, under every contract of tests/model_contracts.py."""

import torch

from hf_vqvae import AudioVQVAEModel

from model_contracts import ModelContracts, ModelTester
from test_audio_vqvae import TINY_AUDIO, speech_like


class AudioVQVAEModelTester(ModelTester):
    model_class = AudioVQVAEModel
    config_fields = TINY_AUDIO
    has_quantizer = True
    per_item_fields = ("logits", "indices")
    # encoder: each strided convolution and z_e; decoder: the WaveNet's embedded input and each block
    hidden_states = {
        "encoder_hidden_states": len(TINY_AUDIO["downsampling_strides"]) + 1,
        "decoder_hidden_states": TINY_AUDIO["num_layers"] + 1,
    }
    float_input = "input_values"

    def inputs(self, batch_size=3, seed=0):
        inputs = {"input_values": speech_like(batch_size, 64, seed=seed)}
        if self.config_fields["num_speakers"]:
            inputs["speaker_ids"] = (torch.arange(batch_size) + seed) % self.config_fields["num_speakers"]
        return inputs


class AudioVQVAEWithoutSpeakersModelTester(AudioVQVAEModelTester):
    config_fields = {**TINY_AUDIO, "num_speakers": 0, "speaker_names": None}


class TestAudioVQVAEModel(ModelContracts):
    tester = AudioVQVAEModelTester()


class TestAudioVQVAEModelWithoutSpeakers(ModelContracts):
    tester = AudioVQVAEWithoutSpeakersModelTester()
