import math

import pytest
import torch
from transformers import AutoModel, GPT2Config, LlamaConfig

from hf_vqvae import TransformerPriorConfig, TransformerPriorModel
from hf_vqvae.models.transformer_prior import generation_transformer_prior

from conftest import put_in_hub_cache, seeded


# A large initializer_range gives a freshly built decoder sharp, label-dependent logits, so comparisons of
# distributions below are not comparisons of near-uniform ones.
TINY_LLAMA = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    initializer_range=0.3,
)
TINY_GPT2 = dict(model_type="gpt2", n_embd=32, n_layer=2, n_head=4, initializer_range=0.3)
# An encoder family's causal language model (BertLMHeadModel) is causal only as a decoder, which the config makes it.
TINY_BERT = dict(
    model_type="bert", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    initializer_range=0.3,
)


def tiny_config(decoder=TINY_LLAMA, **fields) -> TransformerPriorConfig:
    return TransformerPriorConfig(
        **{"num_embeddings": 9, "grid_height": 3, "grid_width": 4, "num_classes": 0, "decoder_config": dict(decoder),
           **fields}
    )


def tiny_model(decoder=TINY_LLAMA, **fields) -> TransformerPriorModel:
    torch.manual_seed(0)
    return TransformerPriorModel(tiny_config(decoder, **fields)).eval()


def random_codes(config, batch_size: int) -> torch.LongTensor:
    return torch.randint(0, config.num_embeddings, (batch_size, config.grid_height, config.grid_width))



def record_drawn_scores(monkeypatch) -> list[torch.Tensor]:
    """A list that receives a copy of every (batch, vocab) scores the sampler draws a code from, in order."""
    recorded = []
    draw = generation_transformer_prior.draw_from_logits

    def recording(scores, *args):
        recorded.append(scores.clone())
        return draw(scores, *args)

    monkeypatch.setattr(generation_transformer_prior, "draw_from_logits", recording)
    return recorded


# ------------------------------------------------------------------------------------------------- config


def test_config_sets_the_decoders_vocabulary_and_length():
    config = tiny_config(num_classes=3)
    assert (config.vocab_size, config.null_label_id, config.sequence_length) == (13, 12, 13)
    decoder = config.decoder_config
    assert isinstance(decoder, LlamaConfig) and decoder.vocab_size == 13 and decoder.max_position_embeddings == 13
    gpt2 = tiny_config(TINY_GPT2).decoder_config
    assert isinstance(gpt2, GPT2Config) and gpt2.vocab_size == 10 and gpt2.n_positions == 13
    default = TransformerPriorConfig().decoder_config
    assert (default.model_type, default.num_hidden_layers, default.hidden_size) == ("llama", 8, 256)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(num_embeddings=1), "num_embeddings"),
        (dict(grid_height=0), "grid_height"),
        (dict(num_classes=-1), "num_classes"),
        (dict(class_dropout_prob=1.0), "class_dropout_prob"),
        (dict(decoder_config=dict(model_type="t5")), r"decoder-only model .*got model_type 't5'"),
        (dict(decoder_config=dict(model_type="bart")), r"decoder-only model .*got model_type 'bart'"),
        (dict(decoder_config="llama"), "decoder_config must be a causal language model's config .*got str"),
        (dict(tie_word_embeddings="yes"), "tie_word_embeddings must be True or False, got 'yes'"),
    ],
)
def test_config_rejects_bad_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        TransformerPriorConfig(**fields)


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
def test_tie_word_embeddings_is_the_decoders_field_and_folders_keep_it_there(decoder):
    config = tiny_config(decoder, tie_word_embeddings=True)
    assert config.decoder_config.tie_word_embeddings is True
    saved = config.to_dict()
    # One source of truth: folders saved before the field was readable here hold it in decoder_config only.
    assert "tie_word_embeddings" not in saved and saved["decoder_config"]["tie_word_embeddings"] is True
    assert TransformerPriorConfig.from_dict(saved).tie_word_embeddings is True
    untied = tiny_config(decoder, tie_word_embeddings=False).to_dict()
    assert TransformerPriorConfig.from_dict(untied).tie_word_embeddings is False
    # Unset, it is the decoder family's default: a Llama unties, a GPT-2 ties.
    assert tiny_config(decoder).tie_word_embeddings is (decoder is TINY_GPT2)


# ------------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
def test_forward_returns_logits_over_codes_and_nll_in_nats(decoder):
    model = tiny_model(decoder, num_classes=2)
    codes, labels = random_codes(model.config, 2), torch.tensor([1, 0])
    output = model(input_ids=codes, class_labels=labels, labels=codes)
    assert output.logits.shape == (2, 9, 3, 4)
    assert torch.allclose(output.loss, torch.nn.functional.cross_entropy(output.logits, codes))
    bits = model.bits_per_code(codes, labels)
    nats = torch.nn.functional.cross_entropy(output.logits, codes, reduction="none").flatten(1).mean(1)
    assert bits.shape == (2,) and torch.allclose(bits, nats / math.log(2))


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2, TINY_BERT], ids=["llama", "gpt2", "bert"])
def test_logits_ignore_codes_at_and_after_their_position(decoder):
    model = tiny_model(decoder, num_classes=2)
    codes, labels = random_codes(model.config, 1), torch.tensor([1])
    logits = model(codes, class_labels=labels).logits.flatten(2)
    for position in range(12):
        changed = codes.clone().flatten(1)
        changed[:, position:] = (changed[:, position:] + 1 + torch.arange(12 - position)) % 9
        changed_logits = model(changed.view(1, 3, 4), class_labels=labels).logits.flatten(2)
        assert torch.allclose(changed_logits[..., : position + 1], logits[..., : position + 1], atol=1e-5)
        if position < 11:  # the next position sees the change
            assert not torch.allclose(changed_logits[..., position + 1], logits[..., position + 1], atol=1e-3)


def test_class_label_is_the_prefix_and_dropout_replaces_it_by_the_null_label_in_training():
    model = tiny_model(num_classes=3, class_dropout_prob=0.5)
    codes = random_codes(model.config, 64)
    labels = torch.full((64,), 1)
    conditional = model(codes, class_labels=labels).logits
    unconditional = model.decoder(
        torch.cat([torch.full((64, 1), model.config.null_label_id), codes.flatten(1)[:, :-1]], 1)
    ).logits[..., :9].transpose(1, 2).reshape(64, 9, 3, 4)
    assert not torch.allclose(conditional, unconditional, atol=1e-3)
    model.train()
    torch.manual_seed(1)
    trained = model(codes, class_labels=labels).logits
    kept = torch.isclose(trained, conditional, atol=1e-5).flatten(1).all(1)
    dropped = torch.isclose(trained, unconditional, atol=1e-5).flatten(1).all(1)
    assert bool((kept ^ dropped).all()), "each grid sees its label or the null label"
    assert 16 < int(dropped.sum()) < 48  # about half of 64
    # bits_per_code never drops labels, whatever the mode.
    assert torch.allclose(model.bits_per_code(codes, labels), model.eval().bits_per_code(codes, labels))


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
def test_hidden_states_are_selected_by_index_as_in_transformers_models(decoder):
    model, codes = tiny_model(decoder), random_codes(tiny_config(decoder), 2)
    every = model(codes, output_hidden_states=True).hidden_states
    assert len(every) == 3
    selected = model(codes, output_hidden_states=[0, -1]).hidden_states
    assert len(selected) == 3 and selected[1] is None
    torch.testing.assert_close(selected[0], every[0])
    torch.testing.assert_close(selected[2], every[2])


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
def test_attentions_are_causal_over_the_prefix_and_the_codes(decoder):
    model = tiny_model(decoder, num_classes=2)
    model.set_attn_implementation("eager")
    codes = random_codes(model.config, 2)
    attentions = model(codes, class_labels=torch.tensor([0, 1]), output_attentions=True).attentions
    assert len(attentions) == 2
    length = model.config.sequence_length - 1  # the prefix and every code but the last
    for weights in attentions:
        assert weights.shape == (2, 4, length, length)
        later = torch.ones(length, length, dtype=torch.bool).triu(1)
        assert torch.all(weights[..., later] == 0) and torch.all(weights[..., ~later] > 0)


# ------------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_generate_with_the_cache_draws_what_full_forward_passes_give(decoder, num_classes, monkeypatch):
    model = tiny_model(decoder, num_classes=num_classes)
    labels = torch.tensor([2, 0, 1]) if num_classes else None
    recorded = record_drawn_scores(monkeypatch)
    for temperature in (1.0, 0.6):
        kwargs = dict(batch_size=3, class_labels=labels, temperature=temperature)
        cached = model.sample(generator=seeded(5), **kwargs)
        cached_scores = torch.stack(recorded, -1)[:, :9]
        recorded.clear()
        plain = model.sample(generator=seeded(5), use_cache=False, **kwargs)
        plain_scores = torch.stack(recorded, -1)[:, :9]
        recorded.clear()
        assert cached.dtype == torch.long and cached.shape == (3, 3, 4)
        assert torch.equal(cached, plain)
        # Each drawn distribution is the one the model's full forward pass gives the drawn codes.
        full = model(cached, class_labels=labels).logits.flatten(2) / temperature
        assert torch.allclose(cached_scores.softmax(1), full.softmax(1), atol=1e-5)
        assert torch.allclose(plain_scores.softmax(1), full.softmax(1), atol=1e-5)


def test_a_list_of_generators_gives_each_grid_what_a_batch_of_one_draws():
    model = tiny_model(num_classes=3)
    batch = model.sample(class_labels=[0, 2], generator=[seeded(1), seeded(2)])
    assert torch.equal(batch[0], model.sample(class_labels=[0], generator=seeded(1))[0])
    assert torch.equal(batch[1], model.sample(class_labels=[2], generator=seeded(2))[0])
    assert not torch.equal(batch[0], batch[1])


def test_top_k_one_is_the_argmax_of_the_forward_pass_and_top_k_cuts_the_rest(monkeypatch):
    model = tiny_model(num_classes=2)
    labels = torch.tensor([0, 1])
    greedy = model.sample(class_labels=labels, top_k=1, generator=seeded(0))
    assert torch.equal(greedy, model(greedy, class_labels=labels).logits.argmax(1))
    recorded = record_drawn_scores(monkeypatch)
    model.sample(class_labels=labels, top_k=3, generator=seeded(0))
    assert all(int(torch.isfinite(scores).sum(1).max()) == 3 for scores in recorded)
    recorded.clear()
    model.sample(class_labels=labels, top_p=0.5, generator=seeded(0))
    kept = [torch.isfinite(scores) for scores in recorded]
    assert all(bool((mask.sum(1) >= 1).all()) for mask in kept) and any(int(mask.sum(1).max()) < 9 for mask in kept)
    assert all(bool(torch.isinf(scores[:, 9:]).all()) for scores in recorded), "only codes are ever drawn"


@pytest.mark.parametrize("guidance_scale", [0.0, 3.0])
def test_guidance_draws_from_the_unconditional_plus_scaled_difference(guidance_scale, monkeypatch):
    model = tiny_model(num_classes=3)
    labels = torch.tensor([0, 2])
    recorded = record_drawn_scores(monkeypatch)
    codes = model.sample(class_labels=labels, guidance_scale=guidance_scale, generator=seeded(3))
    drawn = torch.stack(recorded, -1)[:, :9]
    conditional = model(codes, class_labels=labels).logits.flatten(2).log_softmax(1)
    unconditional = model.decoder(
        torch.cat([torch.full((2, 1), model.config.null_label_id), codes.flatten(1)[:, :-1]], 1)
    ).logits[..., :9].transpose(1, 2).log_softmax(1)
    guided = unconditional + guidance_scale * (conditional - unconditional)
    assert torch.allclose(drawn.softmax(1), guided.softmax(1), atol=1e-5)
    assert not torch.allclose(drawn.softmax(1), conditional.softmax(1), atol=1e-3)


def test_sampling_reports_progress_per_row():
    calls = []
    tiny_model().sample(2, progress_callback=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_static_cache_draws_what_the_dynamic_one_does():
    model = tiny_model(num_classes=3)
    dynamic = model.sample(class_labels=[1, 2], generator=seeded(4))
    static = model.sample(class_labels=[1, 2], generator=seeded(4), cache_implementation="static")
    assert torch.equal(dynamic, static)


# ------------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "fields, kwargs, message",
    [
        (dict(), dict(top_k=0), r"top_k must be None \(no cut\) or an integer in \[1, 9\] \(num_embeddings\), got 0"),
        (dict(), dict(top_k=10), r"top_k .* in \[1, 9\].*got 10"),
        (dict(), dict(top_k=2.0), r"top_k .*got 2.0"),
        (dict(), dict(top_p=0), r"top_p must be None \(no cut\) or a number in \(0, 1\], got 0"),
        (dict(), dict(top_p=1.5), r"top_p .*got 1.5"),
        (dict(num_classes=2), dict(class_labels=[0], guidance_scale=-1), r"guidance_scale must be a finite number >= 0"),
        (dict(num_classes=2), dict(class_labels=[0], guidance_scale=math.inf), "guidance_scale must be a finite"),
        (dict(), dict(guidance_scale=2.0), r"needs a class-conditional prior; this one is unconditional"),
        (dict(num_classes=2, class_dropout_prob=0.0), dict(class_labels=[0], guidance_scale=2.0),
         r"class_dropout_prob > 0.*has class_dropout_prob=0"),
        (dict(), dict(temperature=0.0), "temperature must be a finite number >= 0.001"),
        (dict(), dict(batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(), dict(batch_size=2, generator=[torch.Generator()]), "one per grid: got 1 for batch_size=2"),
        (dict(), dict(class_labels=[0]), r"unconditional prior \(num_classes=0\)"),
        (dict(num_classes=2), dict(), r"class-conditional \(num_classes=2\)"),
        (dict(num_classes=2), dict(class_labels=[2]), r"class_labels must lie in \[0, 2\)"),
    ],
)
def test_sample_rejects_bad_arguments(fields, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**fields).sample(**kwargs)


@pytest.mark.parametrize(
    "make_codes, message",
    [
        (lambda codes: codes.float(), "`input_ids` must be an integer tensor of codes"),
        (lambda codes: codes.clone().fill_(9), r"`input_ids` must hold codes in \[0, 9\) \(num_embeddings\)"),
        (lambda codes: codes[:, :2], r"`input_ids` must have shape \(batch_size, 3, 4\)"),
    ],
)
def test_forward_rejects_bad_codes(make_codes, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model(make_codes(random_codes(model.config, 2)))


def test_the_vocabulary_is_fixed_and_compatibility_with_a_vqvae_is_checked():
    model = tiny_model()
    with pytest.raises(ValueError, match="num_embeddings"):
        model.resize_token_embeddings(20)
    model.check_compatible_with_vqvae(num_embeddings=9, latent_height=3, latent_width=4)
    with pytest.raises(ValueError, match="num_embeddings=9 but the VQ-VAE's codebook has 16 codes"):
        model.check_compatible_with_vqvae(num_embeddings=16, latent_height=3, latent_width=4)


# ------------------------------------------------------------------------------------------------- saving


@pytest.mark.parametrize("decoder", [TINY_LLAMA, TINY_GPT2], ids=["llama", "gpt2"])
def test_loads_by_hub_id_and_pushes_with_its_card(decoder, offline_hub, recorded_uploads, tmp_path):
    prior = tiny_model(decoder, num_classes=3)
    prior.save_pretrained(tmp_path / "prior")
    put_in_hub_cache(offline_hub, "org/transformer-prior", tmp_path / "prior")
    loaded = AutoModel.from_pretrained("org/transformer-prior").eval()
    assert isinstance(loaded, TransformerPriorModel)
    assert type(loaded.decoder) is type(prior.decoder)
    # Loading records the weights' dtype; every other field of the decoder's config comes back as saved.
    saved, reloaded = prior.config.decoder_config.to_dict(), loaded.config.decoder_config.to_dict()
    assert {**reloaded, "dtype": None} == {**saved, "dtype": None}
    codes, labels = random_codes(prior.config, 2), torch.tensor([0, 2])
    assert torch.equal(prior(codes, class_labels=labels).logits, loaded(codes, class_labels=labels).logits)
    kwargs = dict(class_labels=labels, guidance_scale=2.0, top_k=4)
    assert torch.equal(prior.sample(generator=seeded(0), **kwargs), loaded.sample(generator=seeded(0), **kwargs))

    prior.push_to_hub("org/transformer-prior", metrics={"bits_per_code": 2.5})
    upload = recorded_uploads[-1]
    assert sorted(upload["files"]) == ["README.md", "config.json", "model.safetensors"]
    card = upload["files"]["README.md"].decode()
    assert "| bits_per_code | 2.5 |" in card and "conditioned on one of 3 classes" in card
    assert f"`{prior.config.decoder_config.model_type}` causal language model (2 layers of width 32)" in card
    assert 'TransformerPriorModel.from_pretrained("org/transformer-prior")' in card
