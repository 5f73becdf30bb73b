"""ViT (Dosovitskiy et al. 2021) and DeiT's distillation token: patches, positions and their
interpolation, heads, loss, input checks, presets at the papers' sizes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import attnlab
from attnlab.errors import ConfigError, UserError
from attnlab.models import PRESETS, build_model, get_config, list_models
from attnlab.models.vit import ViT, ViTConfig
from attnlab.nn.position.grid import GRID_MODES, resize_grid_positions

SMALL = dict(image_size=16, patch_size=4, d_model=32, n_heads=4, n_layers=2, d_ff=64)


def model(**values) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTConfig(**{**SMALL, **values})).eval()


def pixels(batch=2, channels=3, height=16, width=16):
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(1))


def test_patch_embedding_equals_unfold_and_linear():
    """The strided convolution is a linear map of each flattened P x P x C patch, patches in
    row-major order."""
    vit = model(num_channels=2)
    x = pixels(channels=2)
    conv = vit.embeddings.projection
    with torch.no_grad():
        got = conv(x).flatten(2).transpose(1, 2)  # (B, 16, D)
        patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, 16, C * 4 * 4)
        reference = patches @ conv.weight.reshape(32, -1).t() + conv.bias  # (B, 16, D)
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
        # the same patch order as the sequence the encoder reads, after [CLS]
        tokens = vit.embeddings(x) - vit.embeddings.position_embeddings
        torch.testing.assert_close(tokens[:, 1:], reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens[:, 0], vit.embeddings.cls_token[0].expand(2, -1))


@pytest.mark.parametrize("mode", GRID_MODES)
def test_interpolation_keeps_the_table_exact_at_the_original_grid(mode):
    table = torch.randn(1, 12, 8)
    assert resize_grid_positions(table, (3, 4), (3, 4), mode) is table
    vit = model(position_interpolation=mode, num_labels=3)
    x = pixels()
    with torch.no_grad():
        plain, resized = vit(x).logits, vit(x, interpolate_pos_encoding=True).logits
    assert torch.equal(plain, resized)
    assert vit.embeddings.positions((4, 4), mode) is vit.embeddings.position_embeddings


def test_nearest_doubling_repeats_each_position_in_a_two_by_two_block():
    table = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(1, 6, 1)  # grid 2 x 3
    out = resize_grid_positions(table, (2, 3), (4, 6), "nearest").reshape(4, 6)
    expected = table.reshape(2, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out, expected)
    smooth = resize_grid_positions(table, (2, 3), (4, 6), "bicubic").reshape(4, 6)
    assert not torch.equal(smooth, expected) and smooth.shape == (4, 6)


def test_other_sizes_need_interpolation_and_name_the_sizes():
    vit = model(num_labels=3)
    for height, width in ((16, 20), (24, 24)):
        with pytest.raises(ValueError, match=rf"image size {height}x{width} does not match the "
                                             r"model's 16x16 .*interpolate_pos_encoding=True"):
            vit(pixels(height=height, width=width))
        out = vit(pixels(height=height, width=width), interpolate_pos_encoding=True)
        assert out.last_hidden_state.shape == (2, 1 + (height // 4) * (width // 4), 32)
        assert vit.patch_grid(height, width) == (height // 4, width // 4)
    with pytest.raises(ValueError, match="an image of 2x16 is smaller than one 4x4 patch"):
        vit(pixels(height=2), interpolate_pos_encoding=True)


def test_pixel_values_are_checked():
    vit = model(num_labels=3)
    with pytest.raises(TypeError, match="pixel_values must be a float tensor .* torch.uint8"):
        vit(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="pixel_values must be a torch.Tensor, got list"):
        vit([[0.0]])
    with pytest.raises(ValueError, match=r"shape \(batch, 3, height, width\), got \(3, 16, 16\)"):
        vit(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(batch, 3, height, width\), got \(2, 1, 16"):
        vit(torch.zeros(2, 1, 16, 16))
    with pytest.raises(UserError, match=r"labels must be in \[0, num_labels=3\), got values in "
                                        r"\[0, 3\]"):
        vit(pixels(), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels must be integer classes of shape \(2,\)"):
        vit(pixels(), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="no classification head"):
        model()(pixels(), torch.tensor([0, 1]))


@pytest.mark.parametrize("values, message", [
    (dict(position_interpolation="cubic"), "position_interpolation must be one of"),
    (dict(num_labels=2, labels=("a",)), "labels must be empty or name each of the num_labels=2"),
    (dict(labels="ab", num_labels=2), "labels must be a list of class names"),
    (dict(n_heads=5), r"d_model \(32\) must be divisible by n_heads \(5\)"),
    (dict(patch_size=32), r"patch_size \(32\) must be <= image_size \(16\)"),
    (dict(num_channels=0), "num_channels must be a positive integer, got 0"),
    (dict(image_size=10**6), "image_size=1000000 is outside the sane range"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
])
def test_config_is_checked(values, message):
    with pytest.raises(ConfigError, match=message):
        ViTConfig(**{**SMALL, **values})


def test_heads_loss_and_attentions():
    vit = model(num_labels=5)
    x, labels = pixels(3), torch.tensor([1, 4, 0])
    out = vit(x, labels, output_attentions=True)
    assert out.logits.shape == (3, 5) and out.pooler_output is None
    torch.testing.assert_close(out.logits, vit.classifier(out.last_hidden_state[:, 0]))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    assert out.loss.dtype == torch.float32 and out.cls_logits is None
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 17, 17)
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(3, 4, 17))


def test_distillation_token_and_second_head():
    vit = model(num_labels=5, distillation=True)
    assert vit.num_prefix_tokens == 2
    x, labels = pixels(3), torch.tensor([1, 4, 0])
    out = vit(x, labels)
    hidden = out.last_hidden_state
    assert hidden.shape == (3, 2 + 16, 32)
    cls, dist = vit.classifier(hidden[:, 0]), vit.distillation_classifier(hidden[:, 1])
    torch.testing.assert_close(out.cls_logits, cls)
    torch.testing.assert_close(out.distillation_logits, dist)
    torch.testing.assert_close(out.logits, (cls + dist) / 2)
    expected = (F.cross_entropy(cls, labels) + F.cross_entropy(dist, labels)) / 2
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert vit.embeddings.distillation_token.grad.abs().sum() > 0


def test_no_qkv_bias_keeps_the_output_projection_bias():
    attention = model(qkv_bias=False).encoder.layers[0].self_attn
    assert attention.q_proj.bias is None and attention.k_proj.bias is None
    assert attention.v_proj.bias is None and attention.out_proj.bias is not None


def test_bfloat16_model_takes_float32_pixels():
    vit = model(num_labels=3).to(torch.bfloat16)
    out = vit(pixels(), torch.tensor([0, 2]), interpolate_pos_encoding=True)
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert vit(pixels(height=20), interpolate_pos_encoding=True).logits.dtype == torch.bfloat16


def test_a_few_steps_fit_four_images():
    torch.manual_seed(0)
    vit = build_model("vit-tiny").train()
    x, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW(vit.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss = vit(x, labels).loss
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 3


def test_presets_have_the_papers_sizes():
    def size(name):
        with torch.device("meta"):
            return build_model(name).num_parameters()

    # ViT-B/16 86M, ViT-L/16 304M (Dosovitskiy et al. Table 1); DeiT-S 22M, DeiT-Ti 5M
    # (Touvron et al. Table 1), each with its 1000-class ImageNet head.
    expected = {"vit-base-patch16-224": 86.6e6, "vit-large-patch16-224": 304.3e6,
                "vit-small-patch16-224": 22.1e6, "vit-tiny-patch16-224": 5.7e6,
                "deit-small-distilled-patch16-224": 22.4e6}
    for name, count in expected.items():
        assert abs(size(name) - count) / count < 0.01, name
        assert PRESETS[name].source
    assert size("vit-tiny") < 1e6
    fashion = get_config("vit-fashion")
    assert (fashion.image_size, fashion.num_channels, fashion.patch_size) == (28, 1, 7)
    assert get_config("vit-hybrid-fashion").stem_channels == 32
    assert set(list_models("vit")) >= {"vit-tiny", "vit-fashion", "vit-hybrid-fashion",
                                       *expected}


def test_the_hybrid_reads_patches_of_a_conv_stem(tmp_path):
    """stem_channels > 0: the patch projection reads the stem's feature map (same grid), the
    folder is written in attnlab's layout (transformers has no such ViT) and loads back."""
    hybrid = model(stem_channels=8, num_labels=3).eval()
    assert hybrid.embeddings.projection.in_channels == 8
    x = pixels()  # (2, 3, 16, 16): 4 x 4 patches of 4 x 4
    out = hybrid(x, output_attentions=True)
    assert out.logits.shape == (2, 3) and out.attentions[0].shape[-1] == 1 + 4 * 4
    pure = model(num_labels=3).eval()
    pure.load_state_dict({k: v for k, v in hybrid.state_dict().items()
                          if not k.startswith("stem.") and "projection" not in k},
                         strict=False)
    assert not torch.allclose(pure(x).logits, out.logits)  # the stem is on the path
    hybrid.save_pretrained(tmp_path)
    assert "stem_channels" in (tmp_path / "config.json").read_text()  # attnlab's layout
    again = attnlab.from_pretrained(tmp_path)
    torch.testing.assert_close(again(x).logits, out.logits)
    with pytest.raises(ConfigError, match="stem_channels"):
        ViTConfig(stem_channels=-1)


def test_configs_hf_cannot_hold_are_saved_in_attnlab_layout(tmp_path):
    for values in (dict(position_interpolation="bilinear", num_labels=3),
                   dict(pooler=True, num_labels=3, labels=("a", "b", "c"))):
        vit = model(**values)
        vit.save_pretrained(tmp_path)
        assert "attnlab_version" in json.loads((tmp_path / "config.json").read_text())
        back = attnlab.from_pretrained(tmp_path)
        assert back.config == vit.config
        with pytest.raises(ConfigError, match="no Hugging Face layout"):
            vit.save_pretrained(tmp_path / "hf", layout="hf")


@pytest.mark.parametrize("values", [dict(distillation=True, num_labels=3),
                                    dict(pooler=True), dict(), dict(labels=("x", "y"),
                                                                    num_labels=2)])
def test_hf_layout_round_trips_every_head(values, tmp_path):
    vit = model(**values)
    vit.save_pretrained(tmp_path)
    assert "attnlab_version" not in json.loads((tmp_path / "config.json").read_text())
    back = attnlab.from_pretrained(tmp_path)
    assert back.config == vit.config
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(back(x).last_hidden_state, vit(x).last_hidden_state,
                                   atol=0, rtol=0)
