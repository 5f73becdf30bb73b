"""The small ResNet (He et al. 2016), the CNN the Vision Transformer is compared with: shapes,
input errors naming what was expected, a round trip through a folder, and the width that
matches a parameter count (vit-fashion's, for the vision comparison)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import attnlab
from attnlab.errors import ConfigError, DataError, UserError
from attnlab.models import build_model, get_config
from attnlab.models.resnet import ResNet, ResNetConfig, count_parameters, width_matching


def test_resnet20_has_the_papers_parameter_count():
    # He et al. 2016, Table 6: ResNet-20 on CIFAR-10 has 0.27M parameters (option A
    # shortcuts, which have none; our option B 1x1 projections add ~2.6k)
    assert 0.27e6 <= count_parameters() <= 0.275e6
    assert count_parameters() == ResNet(ResNetConfig()).num_parameters()


@pytest.mark.parametrize("size", [8, 28, 32])
def test_shapes_and_loss(size):
    torch.manual_seed(0)
    model = build_model("resnet-tiny", num_channels=1, num_labels=4)
    x = torch.randn(3, 1, size, size)  # (B, C, H, W)
    labels = torch.tensor([0, 3, 1])
    out = model(x, labels, output_attentions=True)
    assert out.logits.shape == (3, 4)
    stride = 2 ** (len(model.config.depths) - 1)
    h = -(-size // stride)
    assert out.last_hidden_state.shape == (3, 16, h, h)  # the last stage: width * 2
    assert out.pooler_output.shape == (3, 16) and out.attentions is None
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_no_head_gives_features_only():
    model = build_model("resnet-tiny", num_labels=0).eval()
    out = model(torch.randn(2, 3, 16, 16))
    assert out.logits is None and out.pooler_output.shape == (2, 16)
    with pytest.raises(DataError, match="no classification head"):
        model(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))


def test_eval_mode_uses_running_statistics():
    torch.manual_seed(0)
    model = build_model("resnet-tiny").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        alone = model(x[:1]).logits
        together = model(x).logits[:1]
    torch.testing.assert_close(alone, together)  # no batch statistics at inference


def test_bad_inputs_are_named():
    model = build_model("resnet-tiny")
    with pytest.raises(DataError, match=r"must have shape \(batch, 3, height, width\), "
                                        r"got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(DataError, match=r"got \(3, 32, 32\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="float tensor"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"labels must be in \[0, num_labels=10\), got values "
                                        r"in \[0, 10\]"):
        model(torch.randn(2, 3, 32, 32), torch.tensor([0, 10]))
    with pytest.raises(DataError, match=r"shape \(2,\)"):
        model(torch.randn(2, 3, 32, 32), torch.tensor([[0, 1]]))


@pytest.mark.parametrize("values, message", [
    (dict(width=0), "width must be a positive integer, got 0"),
    (dict(depths=()), r"depths must be 1 to 8 positive block counts .* got \(\)"),
    (dict(depths=(2, 0)), r"got \(2, 0\)"),
    (dict(depths="222"), "got '222'"),
    (dict(num_channels=2**11), "num_channels=2048 is outside the sane range"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (dict(num_labels=2, labels=("a",)), "labels must be empty or name each"),
])
def test_bad_configs_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        ResNetConfig(**values)
    assert issubclass(ConfigError, UserError)


def test_save_and_load_keep_weights_and_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet-tiny", labels=tuple("abcdefghij"))
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # moves the running mean / variance off 0 / 1
    model.eval()
    model.save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["model_type"] == "resnet" and values["depths"] == [1, 1]
    back = attnlab.from_pretrained(tmp_path)
    assert isinstance(back, ResNet) and back.config == model.config and not back.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, model(x).logits, rtol=0, atol=0)


def test_width_matching_hits_a_parameter_count():
    config = dict(image_size=28, num_channels=1, depths=(2, 2, 2), num_labels=10)
    for target in (100_000, 540_170, 2_000_000):
        width = width_matching(target, **config)
        got = count_parameters(**config, width=width)
        assert abs(got / target - 1) < 0.05, (target, width, got)
        for other in (width - 1, width + 1):  # no neighbouring width is nearer (in ratio)
            ratio = count_parameters(**config, width=other) / target
            assert abs(math.log(ratio)) >= abs(math.log(got / target))
    assert width_matching(10**9, **config) > width_matching(10**6, **config)
    with pytest.raises(ConfigError, match="params must be a positive integer, got 0"):
        width_matching(0, **config)
    with pytest.raises(ConfigError, match="depths"):
        width_matching(1000, depths=())


def test_resnet_fashion_matches_vit_fashion():
    vit = build_model("vit-fashion").num_parameters()
    resnet = build_model("resnet-fashion").num_parameters()
    config = get_config("resnet-fashion")
    best = width_matching(vit, image_size=28, num_channels=1, depths=config.depths,
                          num_labels=config.num_labels)
    assert abs(resnet / vit - 1) < 0.05, (
        f"resnet-fashion has {resnet:,} parameters, vit-fashion {vit:,}: set the "
        f"resnet-fashion preset's width to {best} (models/__init__.py)")
