"""ViT and DeiT against Hugging Face `transformers` (random weights from configs, offline):
hidden states, pooler, logits, loss, interpolated positions, class names, folders both ways."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.models.vit import ViT  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            image_size=16, patch_size=4, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
WIDER = dict(TINY, hidden_size=192, num_attention_heads=3, intermediate_size=768, image_size=64,
             patch_size=16)
CLOSE = dict(atol=1e-4, rtol=1e-4)


def perturb(model):
    """Every parameter moved off its initial value (DeiT starts its tokens and positions at
    zero, LayerNorms at one and zero), so a wrongly mapped tensor cannot hide."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def through_folder(hf, path) -> ViT:
    hf.save_pretrained(path)
    ours = attnlab.from_pretrained(path)
    assert isinstance(ours, ViT)
    return ours


def pixels(batch=2, channels=3, height=16, width=16, seed=0):
    return torch.randn(batch, channels, height, width,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("values", [TINY, WIDER], ids=["tiny", "wider"])
def test_image_classifier_logits_loss_and_hidden_states(values, tmp_path):
    torch.manual_seed(0)
    hf = perturb(transformers.ViTForImageClassification(
        transformers.ViTConfig(**values, num_labels=5)))
    ours = through_folder(hf, tmp_path)
    assert ours.config.num_labels == 5 and not ours.config.distillation
    x = pixels(3, height=values["image_size"], width=values["image_size"])
    labels = torch.tensor([0, 4, 2])
    with torch.no_grad():
        expected = hf(x, labels=labels, output_hidden_states=True)
        got = ours(x, labels)
    torch.testing.assert_close(got.last_hidden_state,
                               hf.vit.layernorm(expected.hidden_states[-1]), **CLOSE)
    torch.testing.assert_close(got.logits, expected.logits, **CLOSE)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_bare_model_hidden_states_and_pooler(tmp_path):
    torch.manual_seed(1)
    hf = perturb(transformers.ViTModel(transformers.ViTConfig(**TINY)))  # with its pooler
    ours = through_folder(hf, tmp_path)
    assert ours.config.pooler and ours.config.num_labels == 0
    x = pixels(2)
    with torch.no_grad():
        expected, got = hf(x), ours(x)
    assert got.logits is None
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, **CLOSE)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, **CLOSE)
    ours.save_pretrained(tmp_path / "back")
    back = transformers.ViTModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).pooler_output, expected.pooler_output, **CLOSE)


def test_a_bare_model_saved_without_its_pooler_loads(tmp_path):
    torch.manual_seed(2)
    hf = perturb(transformers.ViTModel(transformers.ViTConfig(**TINY), add_pooling_layer=False))
    ours = through_folder(hf, tmp_path)
    x = pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).last_hidden_state, hf(x).last_hidden_state, **CLOSE)


def test_deit_with_teacher_heads_and_folders_both_ways(tmp_path):
    torch.manual_seed(3)
    config = transformers.DeiTConfig(**TINY, num_labels=4)
    hf = perturb(transformers.DeiTForImageClassificationWithTeacher(config))
    ours = through_folder(hf, tmp_path / "hf")
    assert ours.config.distillation and ours.num_prefix_tokens == 2
    x = pixels(3, seed=1)
    with torch.no_grad():
        expected, got = hf(x, output_hidden_states=True), ours(x)
    assert got.last_hidden_state.shape == (3, 2 + 16, 32)
    torch.testing.assert_close(got.last_hidden_state,
                               hf.deit.layernorm(expected.hidden_states[-1]), **CLOSE)
    torch.testing.assert_close(got.cls_logits, expected.cls_logits, **CLOSE)
    torch.testing.assert_close(got.distillation_logits, expected.distillation_logits, **CLOSE)
    torch.testing.assert_close(got.logits, expected.logits, **CLOSE)
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "deit"
    assert saved["architectures"] == ["DeiTForImageClassificationWithTeacher"]
    back = transformers.DeiTForImageClassificationWithTeacher.from_pretrained(tmp_path / "ours")
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x).logits, expected.logits, **CLOSE)


def test_bare_deit_model(tmp_path):
    torch.manual_seed(4)
    hf = perturb(transformers.DeiTModel(transformers.DeiTConfig(**TINY)))
    ours = through_folder(hf, tmp_path)
    x = pixels(2, seed=2)
    with torch.no_grad():
        expected, got = hf(x), ours(x)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, **CLOSE)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, **CLOSE)


@pytest.mark.parametrize("family", ["vit", "deit"])
@pytest.mark.parametrize("size", [(24, 20), (8, 12), (16, 16)])
def test_interpolated_positions_match(family, size, tmp_path):
    """Both resize the patch part of the table bicubically to the new grid (align_corners
    False); at the original size both use the table as it is."""
    torch.manual_seed(5)
    if family == "vit":
        hf = transformers.ViTForImageClassification(transformers.ViTConfig(**TINY, num_labels=3))
    else:
        hf = transformers.DeiTForImageClassificationWithTeacher(
            transformers.DeiTConfig(**TINY, num_labels=3))
    hf = perturb(hf)
    ours = through_folder(hf, tmp_path)
    x = pixels(2, height=size[0], width=size[1], seed=3)
    with torch.no_grad():
        expected = hf(x, interpolate_pos_encoding=True).logits
        got = ours(x, interpolate_pos_encoding=True)
    assert got.last_hidden_state.size(1) == ours.num_prefix_tokens + (size[0] // 4) * (size[1] // 4)
    torch.testing.assert_close(got.logits, expected, **CLOSE)


def test_no_qkv_bias(tmp_path):
    torch.manual_seed(6)
    hf = perturb(transformers.ViTForImageClassification(
        transformers.ViTConfig(**TINY, num_labels=3, qkv_bias=False)))
    ours = through_folder(hf, tmp_path / "hf")
    assert not ours.config.qkv_bias
    x = pixels(2, seed=4)
    with torch.no_grad():
        expected = hf(x).logits
        torch.testing.assert_close(ours(x).logits, expected, **CLOSE)
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, expected, **CLOSE)


def test_class_names_round_trip_as_id2label(tmp_path):
    names = ["cat", "dog", "ship"]
    torch.manual_seed(7)
    config = transformers.ViTConfig(**TINY, id2label=dict(enumerate(names)),
                                    label2id={n: i for i, n in enumerate(names)})
    hf = perturb(transformers.ViTForImageClassification(config))
    ours = through_folder(hf, tmp_path / "hf")
    assert ours.config.labels == tuple(names) and ours.config.num_labels == 3
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours")
    assert back.config.id2label == dict(enumerate(names))
    assert back.config.label2id == {n: i for i, n in enumerate(names)}
    assert attnlab.from_pretrained(tmp_path / "ours").config == ours.config


def test_a_grey_image_model_with_single_channel(tmp_path):
    torch.manual_seed(8)
    config = transformers.ViTConfig(**{**TINY, "image_size": 28}, num_channels=1, num_labels=10)
    hf = perturb(transformers.ViTForImageClassification(config))
    ours = through_folder(hf, tmp_path)
    x = pixels(2, channels=1, height=28, width=28)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, **CLOSE)


def test_unsupported_folders_are_named(tmp_path):
    torch.manual_seed(9)
    deit = transformers.DeiTForImageClassification(transformers.DeiTConfig(**TINY, num_labels=2))
    deit.save_pretrained(tmp_path / "deit")
    with pytest.raises(ValueError, match="DeiTForImageClassification .* not supported"):
        attnlab.from_pretrained(tmp_path / "deit")
    mim = transformers.ViTForMaskedImageModeling(transformers.ViTConfig(**TINY))
    mim.save_pretrained(tmp_path / "mim")
    with pytest.raises(ValueError, match="ViTForMaskedImageModeling"):
        attnlab.from_pretrained(tmp_path / "mim")
    relu = transformers.ViTModel(transformers.ViTConfig(**TINY, hidden_act="relu"))
    relu.save_pretrained(tmp_path / "relu")
    with pytest.raises(ValueError, match="hidden_act must be 'gelu'"):
        attnlab.from_pretrained(tmp_path / "relu")
