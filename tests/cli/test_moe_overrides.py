"""`--set moe.KEY=VALUE`: dotted keys become a nested `moe` object merged key by key (also over a
--config file's), `models.get_config` merges it into the preset's value, `attnlab train lm`
trains a Switch GPT-2 from the command line, and `attnlab list` shows the Mixtral presets."""

from __future__ import annotations

import argparse
import json

import pytest

from attnlab.cli import train
from attnlab.cli.main import main
from attnlab.cli.settings import parse_overrides
from attnlab.errors import ConfigError
from attnlab.models import get_config
from attnlab.nn.moe import MoEConfig

SWITCH = ["moe.experts=8", "moe.top_k=1", "moe.capacity_factor=1.25"]


def test_dotted_keys_become_one_nested_object():
    assert parse_overrides([*SWITCH, "n_layers=1"]) == {
        "moe": {"experts": 8, "top_k": 1, "capacity_factor": 1.25}, "n_layers": 1}
    assert parse_overrides(['moe={"experts": 4, "top_k": 2}', "moe.top_k=1"]) == {
        "moe": {"experts": 4, "top_k": 1}}
    assert parse_overrides(["moe.dispatch=loop"]) == {"moe": {"dispatch": "loop"}}
    assert parse_overrides(["moe.experts=4", "moe=null"]) == {"moe": None}
    with pytest.raises(ConfigError, match="n_layers is 2, not an object"):
        parse_overrides(["n_layers=2", "n_layers.x=1"])
    with pytest.raises(ConfigError, match="FIELD.KEY=VALUE"):
        parse_overrides(["moe..top_k=1"])


def test_get_config_merges_the_nested_object_into_the_preset():
    config = get_config("gpt2-tiny", **parse_overrides(SWITCH))
    assert config.moe == MoEConfig(experts=8, top_k=1, capacity_factor=1.25)
    t5 = get_config("t5-tiny", **parse_overrides(["moe.every=2", "moe.top_k=1"]))
    assert (t5.moe.experts, t5.moe.every, t5.moe.top_k) == (8, 2, 1)  # MoEConfig defaults
    mixtral = get_config("mixtral-tiny", **parse_overrides(["moe.experts=4"]))
    assert (mixtral.moe.experts, mixtral.moe.top_k, mixtral.moe.aux_loss_coef) == (4, 2, 0.001)
    with pytest.raises(ConfigError, match="unknown moe setting"):
        get_config("gpt2-tiny", **parse_overrides(["moe.expert=8"]))


def test_set_merges_into_a_config_files_moe(tmp_path):
    config = tmp_path / "lm.json"
    config.write_text(json.dumps({"model_overrides": {"moe": {"experts": 4, "top_k": 2},
                                                      "n_layers": 1}}))
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["lm", "--config", str(config), "--set", "moe.top_k=1"])
    settings = train.settings_from_args(args, train.COMMANDS["lm"])
    assert settings.model_overrides == {"moe": {"experts": 4, "top_k": 1}, "n_layers": 1}


def test_train_lm_trains_a_switch_gpt2(tmp_path):
    text = tmp_path / "text.txt"
    words = "the cat sat on a warm mat while the dog ran after a red ball".split()
    text.write_text("\n".join(" ".join(words[(i * 7 + j) % 14] for j in range(9))
                              for i in range(120)) + "\n")
    out = tmp_path / "run"
    flags = [f for item in SWITCH for f in ("--set", item)]
    assert main(["--threads", "1", "train", "lm", "--text", str(text), "--out", str(out),
                 "--preset", "gpt2-tiny", "--max-steps", "2", "--block-size", "16",
                 "--batch-size", "4", "--vocab-size", "300", *flags]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "gpt2" and "attnlab_version" in saved  # no HF GPT-2 MoE
    assert (saved["moe"]["experts"], saved["moe"]["top_k"],
            saved["moe"]["capacity_factor"]) == (8, 1, 1.25)


def test_list_shows_the_mixtral_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mixtral-tiny" in out and "mixtral-8x7b" in out
