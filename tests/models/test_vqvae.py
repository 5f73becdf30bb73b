"""The VQ-VAE (models/vqvae.py): shapes of forward / encode / decode, the straight-through
gradient reaching the encoder, pixels <-> [-1, 1], the codebook as buffers that a folder and a
training step carry, and the checks on configs and inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab
from attnlab.errors import ConfigError, DataError
from attnlab.models import build_model
from attnlab.models.vqvae import VQVAE, VQVAEConfig, to_pixels, to_unit


def pixels(config: VQVAEConfig, batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, config.num_channels, config.image_size, config.image_size)
    return torch.rand(shape, generator=generator) * 2 - 1


@pytest.mark.parametrize("values", [dict(), dict(downsample=2), dict(downsample=8, res_blocks=0),
                                    dict(downsample=1, num_channels=1)])
def test_forward_encode_decode_shapes(values):
    torch.manual_seed(0)
    model = build_model("vqvae-tiny", **values).eval()
    c = model.config
    h, w = model.grid
    assert (h, w) == (c.image_size // c.downsample,) * 2
    x = pixels(c)
    out = model(x)
    assert out.reconstruction.shape == x.shape and out.codes.shape == (3, h, w)
    assert out.reconstruction.abs().max() <= 1.0
    assert out.usage.shape == (c.codebook_size,) and int(out.usage.sum()) == 3 * h * w
    torch.testing.assert_close(out.loss, out.reconstruction_loss + c.beta * out.commitment_loss)
    codes = model.encode(x)
    assert torch.equal(codes, out.codes)
    decoded = model.decode(codes)
    assert decoded.shape == x.shape
    torch.testing.assert_close(decoded, out.reconstruction)  # eval: the same codes, same image


def test_straight_through_gradient_reaches_the_encoder():
    """The reconstruction loss's gradient on the encoder equals the decoder's gradient at the
    quantized vectors carried back through the identity: d L / d z_e = d L / d z_q."""
    torch.manual_seed(1)
    model = build_model("vqvae-tiny").eval()  # eval: the codebook stays put between passes
    x = pixels(model.config)
    encoder = list(model.encoder.parameters())
    out = model(x)
    grads = torch.autograd.grad(out.reconstruction_loss, encoder)
    assert all(g.abs().sum() > 0 for g in grads)

    z = model.features(x)  # (B, h, w, D)
    zq = model.quantizer.lookup(model.quantizer.nearest(z)).detach().requires_grad_()
    recon = F.mse_loss(model.decoder(zq.permute(0, 3, 1, 2)), x)
    (at_zq,) = torch.autograd.grad(recon, zq)
    expected = torch.autograd.grad(z, encoder, grad_outputs=at_zq)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    # and the codebook gets no gradient: it is a buffer, learned by its moving averages
    assert not any(name.startswith("quantizer.") for name, _ in model.named_parameters())


def test_training_moves_the_codebook_and_a_folder_keeps_it(tmp_path):
    torch.manual_seed(2)
    model = build_model("vqvae-tiny").train()
    before = model.quantizer.codebook.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(3):
        optimizer.zero_grad()
        model(pixels(model.config, 8, seed=step)).loss.backward()
        optimizer.step()
    assert not torch.equal(model.quantizer.codebook, before)
    model.eval()
    model.save_pretrained(tmp_path / "vq")
    back = attnlab.from_pretrained(tmp_path / "vq")
    assert isinstance(back, VQVAE) and back.config == model.config and not back.training
    for name, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    x = pixels(model.config, seed=9)
    assert torch.equal(back.encode(x), model.encode(x))
    torch.testing.assert_close(back(x).reconstruction, model(x).reconstruction, rtol=0, atol=0)


def test_encode_never_changes_the_codebook():
    model = build_model("vqvae-tiny").train()
    before = model.quantizer.codebook.clone()
    model.encode(pixels(model.config))
    assert torch.equal(model.quantizer.codebook, before)


def test_pixels_round_trip_through_the_unit_scale():
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    unit = to_unit(every)
    assert unit.dtype == torch.float32 and unit.min() == -1.0 and unit.max() == 1.0
    assert torch.equal(to_pixels(unit), every)
    assert to_pixels(torch.tensor([-3.0, 2.0, 0.0])).tolist() == [0, 255, 128]
    with pytest.raises(DataError, match="pixels must be a uint8 tensor, got torch.float32"):
        to_unit(unit)
    with pytest.raises(DataError, match="unit must be a float tensor, got torch.uint8"):
        to_pixels(every)


@pytest.mark.parametrize("values, message", [
    (dict(downsample=3), "downsample must be a power of two"),
    (dict(image_size=18, downsample=4), "image_size=18 must be a multiple of downsample=4"),
    (dict(codebook_size=0), r"codebook_size=0 is outside the sane range"),
    (dict(hidden_channels=100_000), r"hidden_channels=100000 is outside the sane range"),
    (dict(code_dim=2.5), "code_dim must be a positive integer, got 2.5"),
    (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\), got 1.0"),
    (dict(beta=-1), r"beta must be a number in \[0, 1000\], got -1"),
])
def test_bad_configs_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        VQVAEConfig(**values)


def test_bad_inputs_are_named():
    model = build_model("vqvae-tiny")
    with pytest.raises(DataError, match=r"must be 16x16 images .* got \(2, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(DataError, match=r"shape \(batch, 3, height, width\)"):
        model.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(DataError, match=r"codes must be in \[0, codebook_size=32\), got values "
                                        r"in \[32, 32\]"):
        model.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(DataError, match=r"codes must be integer \(batch, 4, 4\) tensors, got "
                                        r"torch.float32 \(1, 4, 4\)"):
        model.decode(torch.zeros(1, 4, 4))
    with pytest.raises(DataError, match=r"\(batch, 4, 4\) tensors, got torch.int64 \(1, 5, 4\)"):
        model.decode(torch.zeros(1, 5, 4, dtype=torch.long))


def test_presets_fit_their_purpose():
    tiny = build_model("vqvae-tiny")
    assert tiny.num_parameters() < 1_000_000
    scenes = build_model("vqvae-scenes").config
    assert (scenes.num_channels, scenes.image_size, scenes.grid) == (1, 32, (8, 8))
    assert 64 <= scenes.codebook_size <= 128
    emoji = build_model("vqvae-emoji").config
    assert (emoji.num_channels, emoji.grid, emoji.codebook_size) == (3, (8, 8), 256)
