"""The contracts every model of the package meets, checked for each model by one mixin, as transformers' own
`ModelTesterMixin` (tests/test_modeling_common.py) checks its models.

A model's test module (tests/models/<name>/test_modeling_<name>.py) gives a `ModelTester`: a tiny config, inputs of
any batch size, and what its outputs hold. `class TestXModel(ModelContracts): tester = XModelTester()` then runs
every contract below on that model. A contract a model cannot meet is not skipped silently: the tester says why
(`hidden_states = {}` and the like).
"""

import copy
import json

import numpy as np
import pytest
import safetensors.torch
import torch
from transformers import AutoConfig, AutoModel


class ModelTester:
    """What the contracts need to know about one model."""

    model_class: type = None
    config_fields: dict = {}
    # The output fields that hold one row per batch item (checked item by item), the first being the main one.
    per_item_fields: tuple[str, ...] = ()
    # Hidden-state fields and how many states each holds; every state has the batch first (times `hidden_batch_factor`).
    hidden_states: dict[str, int] = {}
    hidden_batch_factor: int = 1
    # How many attention maps `output_attentions=True` returns (one per attention layer); 0 for a model without
    # attention (a convolutional one), whose attention contract is then skipped with that reason.
    attention_layers: int = 0
    # Whether the config's `tie_word_embeddings` makes the output layer the input embedding: True for a model with a
    # token vocabulary in and out; a model without one has no such field and skips that contract.
    ties_word_embeddings: bool = False
    # The input holding numbers (NaN / Inf refused) or codes (out-of-range ids refused); the other is None.
    float_input: str | None = None
    code_input: str | None = None
    # Parameters that get no gradient from the loss by design (e.g. a codebook updated by EMA), with why.
    parameters_without_gradient: dict[str, str] = {}
    # A model with a quantizer: one training forward first, so that its codebook starts from the encoder's outputs
    # (k-means) as after a first training step. A random codebook maps every input to one code, which would make
    # checks over codes vacuous.
    has_quantizer: bool = False

    def config(self, **overrides):
        return self.model_class.config_class(**{**self.config_fields, **overrides})

    def model(self, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        model = self.model_class(self.config(**overrides))
        if self.has_quantizer:
            with torch.no_grad():
                model.train()(**self.training_inputs(self.inputs(batch_size=8, seed=99)))
        return model.eval()

    def inputs(self, batch_size: int = 3, seed: int = 0) -> dict:
        raise NotImplementedError

    def training_inputs(self, inputs: dict) -> dict:
        """`inputs` with what makes `forward` return a loss (a model scoring codes takes them as `labels`)."""
        return inputs


class CodeGridPriorTester(ModelTester):
    """A prior over code grids (the PixelCNN and the transformer prior): inputs are (batch, grid_height, grid_width)
    codes, with class labels when its config has classes; it scores its inputs as their own labels."""

    per_item_fields = ("logits",)
    code_input = "input_ids"

    def inputs(self, batch_size=3, seed=0):
        generator = torch.Generator().manual_seed(seed)
        grid = (self.config_fields["grid_height"], self.config_fields["grid_width"])
        inputs = {"input_ids": torch.randint(0, self.config_fields["num_embeddings"], (batch_size, *grid), generator=generator)}
        if self.config_fields.get("num_classes"):
            inputs["class_labels"] = torch.randint(0, self.config_fields["num_classes"], (batch_size,), generator=generator)
        return inputs

    def training_inputs(self, inputs):
        return inputs | {"labels": inputs["input_ids"]}


def assert_outputs_equal(actual, expected, atol: float = 0.0) -> None:
    """Two model outputs (ModelOutput or tuple) hold the same fields with the same values."""
    actual = actual.to_tuple() if hasattr(actual, "to_tuple") else tuple(actual)
    expected = expected.to_tuple() if hasattr(expected, "to_tuple") else tuple(expected)
    assert len(actual) == len(expected)
    for left, right in zip(actual, expected):
        if isinstance(right, torch.Tensor):
            torch.testing.assert_close(left, right, atol=atol, rtol=0)
        elif isinstance(right, tuple):
            assert_outputs_equal(left, right, atol)
        else:
            assert left == right


def assert_gradients_reach(hidden_states: tuple, output: torch.Tensor) -> None:
    """Every hidden state is a tensor `output` is computed from, not a copy: after a backward pass from it each has
    a gradient (transformers' contract, which `retain_grad` on returned hidden states relies on)."""
    for state in hidden_states:
        state.retain_grad()
    output.backward()
    assert all(state.grad is not None for state in hidden_states)


def assert_input_embeddings_are(model, embedding: torch.nn.Embedding, inputs: dict) -> None:
    """`model.get_input_embeddings()` is `embedding`, the one its logits are computed from: with every weight frozen,
    `enable_input_require_grads()` (PEFT's hook) makes the logits require gradients, and `set_input_embeddings`
    puts a replacement in its place."""
    assert model.get_input_embeddings() is embedding
    model.requires_grad_(False)
    assert not model(**inputs).logits.requires_grad
    model.enable_input_require_grads()
    assert model(**inputs).logits.requires_grad

    replacement = torch.nn.Embedding(*embedding.weight.shape)
    before = model(**inputs).logits
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement and not torch.allclose(model(**inputs).logits, before)


def assert_export_matches_eager(model, example_inputs: dict, inputs: dict) -> None:
    """torch.export traces `model` on `example_inputs` (keyword arguments); the exported program gives the eager
    outputs on other `inputs` of the same shapes."""
    exported = torch.export.export(model, (), {**example_inputs, "return_dict": False}).module()
    actual, expected = exported(**inputs, return_dict=False), model(**inputs, return_dict=False)
    assert len(actual) == len(expected)
    for exported_output, eager_output in zip(actual, expected):
        torch.testing.assert_close(exported_output, eager_output)


def assert_onnx_export_matches_eager(path, model, inputs: dict) -> None:
    """ONNX export (dynamo) of `model` on `inputs` (keyword arguments): onnxruntime gives the eager outputs."""
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.onnx.export(model, (), kwargs={**inputs, "return_dict": False}, dynamo=True).save(path)
    session = onnxruntime.InferenceSession(path)
    outputs = session.run(None, {given.name: inputs[given.name].numpy() for given in session.get_inputs()})
    expected = model(**inputs, return_dict=False)
    assert len(outputs) == len(expected)
    for actual, eager_output in zip(outputs, expected):
        np.testing.assert_allclose(actual, eager_output.detach().numpy(), atol=1e-5, rtol=0)


class ModelContracts:
    """Every contract, for the model of `tester`."""

    tester: ModelTester

    # ------------------------------------------------------------------------------------------ saving and loading

    def test_save_and_load_through_auto_model_give_the_same_outputs(self, tmp_path):
        model, inputs = self.tester.model(), self.tester.inputs()
        model.save_pretrained(tmp_path)
        assert sorted(path.name for path in tmp_path.iterdir() if path.suffix not in (".json", ".md")) == ["model.safetensors"]
        loaded = AutoModel.from_pretrained(tmp_path)
        assert type(loaded) is type(model) and not loaded.training
        with torch.no_grad():
            assert_outputs_equal(loaded(**inputs), model(**inputs))

    def test_a_variant_is_saved_and_loaded_under_its_name(self, tmp_path):
        model, inputs = self.tester.model(), self.tester.inputs()
        model.save_pretrained(tmp_path, variant="fp16")
        assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == ["model.fp16.safetensors"]
        with torch.no_grad():
            assert_outputs_equal(self.tester.model_class.from_pretrained(tmp_path, variant="fp16")(**inputs), model(**inputs))

    def test_the_config_round_trips_through_json_and_auto_config(self, tmp_path):
        config = self.tester.config()
        again = type(config).from_dict(json.loads(config.to_json_string()))
        assert again.to_dict() == config.to_dict()
        config.save_pretrained(tmp_path)
        loaded = AutoConfig.from_pretrained(tmp_path)
        assert type(loaded) is type(config)
        assert {**loaded.to_dict(), "_name_or_path": ""} == config.to_dict()  # loading records where it came from

    def test_the_same_seed_builds_the_same_weights_and_buffers(self):
        first, second = self.tester.model(seed=3).state_dict(), self.tester.model(seed=3).state_dict()
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), name
        other = self.tester.model(seed=4).state_dict()
        assert any(not torch.equal(first[name], other[name]) for name in first if first[name].is_floating_point())

    # ------------------------------------------------------------------------------------------ outputs

    def test_return_dict_false_gives_the_same_fields_as_a_tuple(self):
        model, inputs = self.tester.model(), self.tester.inputs()
        with torch.no_grad():
            as_output, as_tuple = model(**inputs), model(**inputs, return_dict=False)
        assert isinstance(as_tuple, tuple)
        assert_outputs_equal(as_tuple, as_output.to_tuple())

    def test_each_item_alone_gives_its_row_of_the_batch(self):
        model, batch = self.tester.model(), self.tester.inputs(batch_size=3)
        with torch.no_grad():
            together = model(**batch)
        main = getattr(together, self.tester.per_item_fields[0])
        assert not torch.equal(main[0], main[1]), "the tester's items give the same output: the check would be vacuous"
        with torch.no_grad():
            for item in range(3):
                alone = model(**{name: value[item:item + 1] for name, value in batch.items()})
                for field in self.tester.per_item_fields:
                    torch.testing.assert_close(getattr(alone, field)[0], getattr(together, field)[item], atol=1e-5, rtol=1e-4, msg=field)

    def test_hidden_states_come_by_argument_or_by_config_and_gradients_reach_them(self):
        if not self.tester.hidden_states:
            pytest.fail("the tester names no hidden-state fields: every model returns its hidden states")
        inputs = self.tester.inputs(batch_size=2)
        model = self.tester.model()
        assert all(getattr(model(**inputs), name) is None for name in self.tester.hidden_states)
        for output in (model(**inputs, output_hidden_states=True), self.tester.model(output_hidden_states=True)(**inputs)):
            for name, count in self.tester.hidden_states.items():
                states = getattr(output, name)
                assert isinstance(states, tuple) and len(states) == count, (name, len(states or ()))
                assert all(state.shape[0] == 2 * self.tester.hidden_batch_factor for state in states), name
        output = model(**inputs, output_hidden_states=True)
        first_states = tuple(getattr(output, name)[0] for name in self.tester.hidden_states)
        main = getattr(output, self.tester.per_item_fields[0])
        assert_gradients_reach(first_states, main.float().sum())

    def test_attentions_come_by_argument_or_by_config_and_gradients_reach_them(self):
        """transformers' attention contract (ModelTesterMixin.test_attention_outputs and
        test_retain_grad_hidden_states_attentions): the eager attention returns one map per attention layer, by
        argument or by config, each a distribution over the keys for every query; none unless asked; and switching
        the attention implementation leaves the outputs as they were."""
        if not self.tester.attention_layers:
            pytest.skip(f"{self.tester.model_class.__name__} has no attention layer (tester.attention_layers = 0)")
        inputs = self.tester.inputs(batch_size=2)
        model = self.tester.model()
        with torch.no_grad():
            default_output = model(**inputs)
        model.set_attn_implementation("eager")
        assert model(**inputs).attentions is None
        by_config = self.tester.model(attn_implementation="eager", output_attentions=True)
        for output in (model(**inputs, output_attentions=True), by_config(**inputs)):
            assert isinstance(output.attentions, tuple) and len(output.attentions) == self.tester.attention_layers
            for weights in output.attentions:
                assert weights.ndim == 4 and weights.shape[0] == 2 and weights.shape[-1] == weights.shape[-2]
                torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        main = getattr(default_output, self.tester.per_item_fields[0])
        with torch.no_grad():
            torch.testing.assert_close(getattr(model(**inputs), self.tester.per_item_fields[0]), main, atol=1e-5, rtol=1e-4)
        output = model(**inputs, output_attentions=True)
        assert_gradients_reach(output.attentions[:1], getattr(output, self.tester.per_item_fields[0]).float().sum())

    def test_tie_word_embeddings_makes_the_output_layer_the_input_embedding(self, tmp_path):
        """transformers' tying contract (ModelTesterMixin.test_tied_weights_keys): `tie_word_embeddings` on the
        model's config, given to the config or set on it before the model is built, makes the output layer's weight
        the input embedding's, which saving stores once and loading ties again."""
        if not self.tester.ties_word_embeddings:
            pytest.skip(f"{self.tester.model_class.__name__} has no token vocabulary in and out to tie")
        untied = self.tester.model()
        assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight
        set_later = self.tester.config()
        set_later.tie_word_embeddings = True
        for tied in (self.tester.model(tie_word_embeddings=True), self.tester.model_class(set_later)):
            assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight
        tied.eval().save_pretrained(tmp_path)
        assert len(safetensors.torch.load_file(tmp_path / "model.safetensors")) == len(untied.state_dict()) - 1
        loaded = AutoModel.from_pretrained(tmp_path)
        assert loaded.config.tie_word_embeddings
        assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
        with torch.no_grad():
            assert_outputs_equal(loaded(**self.tester.inputs()), tied(**self.tester.inputs()))

    # ------------------------------------------------------------------------------------------ bad input

    def test_non_finite_or_out_of_range_inputs_are_refused_by_name(self):
        model, inputs = self.tester.model(), self.tester.inputs()
        if self.tester.float_input is not None:
            for bad in (float("nan"), float("inf")):
                values = inputs[self.tester.float_input].clone()
                values.view(-1)[1] = bad
                with pytest.raises(ValueError, match=rf"`?{self.tester.float_input}`?.*(NaN|Inf|finite)"):
                    model(**inputs | {self.tester.float_input: values})
        if self.tester.code_input is not None:
            codes = inputs[self.tester.code_input].clone()
            codes.view(-1)[1] = 10_000
            with pytest.raises(ValueError, match=rf"`?{self.tester.code_input}`?.*\[0, \d+\)"):
                model(**inputs | {self.tester.code_input: codes})

    # ------------------------------------------------------------------------------------------ training

    def test_a_training_step_gives_every_trainable_parameter_a_gradient(self):
        model = self.tester.model().train()
        model(**self.tester.training_inputs(self.tester.inputs())).loss.backward()
        missing = {name for name, parameter in model.named_parameters() if parameter.requires_grad and parameter.grad is None}
        assert missing == set(self.tester.parameters_without_gradient), missing

    def test_gradient_checkpointing_gives_the_same_gradients_or_is_refused(self):
        plain = self.tester.model().train()
        if not plain.supports_gradient_checkpointing:
            with pytest.raises(ValueError, match="does not support"):
                plain.activation_checkpointing_enable()  # transformers 5's name of gradient_checkpointing_enable
            return
        checkpointed = copy.deepcopy(plain)
        checkpointed.activation_checkpointing_enable()
        assert checkpointed.is_activation_checkpointing  # transformers 5's name of is_gradient_checkpointing
        inputs = self.tester.training_inputs(self.tester.inputs())
        plain(**inputs).loss.backward()
        checkpointed(**inputs).loss.backward()
        for (name, expected), actual in zip(plain.named_parameters(), checkpointed.parameters()):
            if expected.grad is not None:
                torch.testing.assert_close(actual.grad, expected.grad, msg=name)

    # ------------------------------------------------------------------------------------------ dtypes and export

    @pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
    def test_half_precision_builds_and_loads_with_the_quantizer_kept_in_float32(self, tmp_path, dtype):
        self.tester.model().save_pretrained(tmp_path)
        built = self.tester.model_class._from_config(self.tester.config(), dtype=dtype)
        for model in (built, self.tester.model_class.from_pretrained(tmp_path, dtype=dtype)):
            assert {parameter.dtype for name, parameter in model.named_parameters() if "quantizer" not in name} == {dtype}
            for name, tensor in model.state_dict().items():  # the codebook and its EMA state: distances need fp32
                assert "quantizer" not in name or not tensor.is_floating_point() or tensor.dtype == torch.float32, name
            with torch.no_grad():
                output = model.eval()(**self.tester.inputs())
            assert torch.isfinite(getattr(output, self.tester.per_item_fields[0]).float()).all()

    def test_torch_export_matches_eager_on_other_inputs(self):
        model = self.tester.model()
        assert_export_matches_eager(model, self.tester.inputs(seed=0), self.tester.inputs(seed=1))
