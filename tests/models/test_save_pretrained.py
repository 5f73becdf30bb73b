"""`model.save_pretrained(dir)` for every family: the folder `attnlab.from_pretrained` reads back
with identical weights, in Hugging Face layout where transformers has the family."""

from __future__ import annotations

import json

import pytest
import torch

import attnlab
from attnlab.models import build_model, list_models

TINY = [name for name in list_models() if name.endswith("-tiny")]


@pytest.mark.parametrize("name", TINY)
def test_round_trip_keeps_every_weight(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name)
    model.save_pretrained(tmp_path / "out")  # the folder is created
    values = json.loads((tmp_path / "out" / "config.json").read_text())
    from attnlab.interop.hf_folder import FAMILIES

    native = type(model.config).model_type not in FAMILIES
    assert ("attnlab_version" in values) == native  # HF layout for the HF families
    back = attnlab.from_pretrained(tmp_path / "out")
    assert type(back) is type(model) and back.config == model.config
    expected = model.state_dict()
    for key, value in back.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_layout_can_be_forced_and_is_checked(tmp_path):
    model = build_model("gpt2-tiny")
    model.save_pretrained(tmp_path, layout="attnlab")
    assert "attnlab_version" in json.loads((tmp_path / "config.json").read_text())
    assert attnlab.from_pretrained(tmp_path).config == model.config
    with pytest.raises(ValueError, match="layout must be 'auto', 'hf' or 'attnlab', got 'onnx'"):
        model.save_pretrained(tmp_path, layout="onnx")
    with pytest.raises(ValueError, match="no Hugging Face layout for model_type 'transformer'"):
        build_model("transformer-tiny").save_pretrained(tmp_path / "t", layout="hf")
