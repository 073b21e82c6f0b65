import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_vqvae import PRESETS, VQVAEConfig, VQVAEModel
from hf_vqvae.models.vqvae.modeling_vqvae import VQVAEOutput


def structured_images(count: int, size: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images of two flat colours split by a random horizontal or vertical edge, in [-1, 1]."""
    images = torch.empty(count, 3, size, size)
    colours = torch.rand(count, 2, 3, generator=generator) * 2 - 1
    cuts = torch.randint(2, size - 2, (count,), generator=generator)
    vertical = torch.rand(count, generator=generator) < 0.5
    grid = torch.arange(size)
    for index in range(count):
        axis = grid.view(1, size) if vertical[index] else grid.view(size, 1)
        mask = (axis < cuts[index]).expand(size, size)
        images[index] = torch.where(mask, colours[index, 0].view(3, 1, 1), colours[index, 1].view(3, 1, 1))
    return images


def test_forward_output_fields_and_tuple(tiny_model):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = tiny_model(images)
    assert isinstance(out, VQVAEOutput)
    assert out.reconstruction.shape == images.shape
    assert out.indices.shape == (2, 4, 4) and out.indices.dtype == torch.long
    expected = out.reconstruction_loss + out.codebook_loss + 0.25 * out.commitment_loss
    torch.testing.assert_close(out.loss, expected)
    as_tuple = tiny_model.eval()(images, return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[1].shape == images.shape


def test_encode_decode_agree_with_forward(tiny_model):
    tiny_model.eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    encoded = tiny_model.encode(images)
    assert encoded.latents.shape == (3, 4, 4, 4)
    assert encoded.indices.shape == (3, 4, 4)
    from_codes = tiny_model.decode(encoded.indices).reconstruction
    from_latents = tiny_model.decode_latents(encoded.quantized).reconstruction
    torch.testing.assert_close(from_codes, from_latents)
    torch.testing.assert_close(from_codes, tiny_model(images).reconstruction)


def test_paper_presets_give_the_papers_code_grids():
    assert VQVAEConfig.from_preset("imagenet128").latent_size == 32
    assert VQVAEConfig.from_preset("dmlab84").latent_size == 21
    assert VQVAEConfig.from_preset("cifar10").latent_size == 8
    for name in PRESETS:
        assert VQVAEConfig.from_preset(name).num_embeddings == 512
    config = VQVAEConfig.from_preset("dmlab84", hidden_channels=8, residual_channels=4)
    model = VQVAEModel(config).eval()
    assert model.encode(torch.zeros(1, 3, 84, 84)).indices.shape == (1, 21, 21)
    assert model.decode(torch.zeros(1, 21, 21, dtype=torch.long)).reconstruction.shape == (1, 3, 84, 84)
    with pytest.raises(ValueError, match="unknown VQ-VAE preset 'mnist'"):
        VQVAEConfig.from_preset("mnist")


def test_auto_classes_resolve_to_the_package(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VQVAEConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), VQVAEModel)


@pytest.mark.parametrize("update_rule", ["ema", "loss"])
def test_training_lowers_reconstruction_loss_and_uses_many_codes(update_rule):
    generator = torch.Generator().manual_seed(0)
    data = structured_images(512, generator=generator)
    config = VQVAEConfig(
        hidden_channels=32, residual_channels=16, num_residual_blocks=1, num_embeddings=32, embedding_dim=8,
        sample_size=16, update_rule=update_rule,
    )
    model = VQVAEModel(config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.eval()
    start = model(data[:128]).reconstruction_loss.item()
    model.train()
    for _ in range(600):
        batch = data[torch.randint(0, len(data), (32,), generator=generator)]
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(data[:128])
    assert out.reconstruction_loss.item() < 0.2 * start
    assert out.indices.unique().numel() >= 24  # of 32 codes


def test_bad_pixel_values_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="3 channels .* expects in_channels=3|has 4 channels but the model expects in_channels=3"):
        tiny_model(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4"):
        tiny_model(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ValueError, match="4 dimensions"):
        tiny_model(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="floats in \\[-1, 1\\], got dtype torch.uint8"):
        tiny_model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        tiny_model.encode([[0.0]])


def test_bad_indices_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\), got values in \[0, 16\]"):
        tiny_model.decode(torch.tensor([[[0, 16]]]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\)"):
        tiny_model.decode(torch.tensor([[[-1, 0]]]))
    with pytest.raises(ValueError, match=r"shape \(batch, height, width\), got \(4, 4\)"):
        tiny_model.decode(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        tiny_model.decode(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"latents must have shape \(batch, 4, height, width\)"):
        tiny_model.decode_latents(torch.zeros(1, 5, 4, 4))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_embeddings", 0, "num_embeddings must be an integer >= 2, got 0"),
        ("embedding_dim", -3, "embedding_dim must be an integer >= 1"),
        ("decay", 1.0, r"decay must be a finite number in \(0, 1\), got 1.0"),
        ("decay", 0.0, r"decay must be a finite number in \(0, 1\)"),
        ("update_rule", "gumbel", r"update_rule must be one of \('loss', 'ema'\), got 'gumbel'"),
        ("commitment_cost", -0.1, "commitment_cost must be a finite number >= 0"),
        ("dead_code_threshold", -1.0, "dead_code_threshold must be a finite number >= 0"),
        ("sample_size", 30, r"sample_size \(30\) must be divisible by the downsampling factor"),
        ("num_residual_blocks", -1, "num_residual_blocks must be an integer >= 0"),
    ],
)
def test_invalid_config_values_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        VQVAEConfig(**{field: value})


def test_an_empty_batch_is_an_error_named_as_such(tiny_model):
    with pytest.raises(ValueError, match=r"empty batch: pixel_values holds no images \(batch size 0\)"):
        tiny_model(torch.zeros(0, 3, 16, 16))
    with pytest.raises(ValueError, match=r"empty batch: indices holds no code grids \(batch size 0\)"):
        tiny_model.decode(torch.zeros(0, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"empty batch: latents holds no latent grids"):
        tiny_model.decode_latents(torch.zeros(0, 4, 4, 4))
