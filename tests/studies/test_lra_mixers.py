"""`attnlab bench lra` with the recurrent sequence mixers (nn/mixers) beside the attention
variants: the name lists (default: the mixers but the LSTM; --names takes any), the mixers'
pooling (never "first"; "last" by default, on every task), a tiny study whose report and plot
mark the mixer rows, and the CLI. Uses a stand-in mixer, plus every registered one where it
is cheap."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch
from torch import Tensor

from attnlab.cli.main import main
from attnlab.nn.attention import ATTENTION
from attnlab.nn.mixers import MIXER, SequenceMixer, zero_padding
from attnlab.studies.lra import study
from attnlab.studies.lra.report import markdown, mixers
from attnlab.studies.lra.study import (
    RNN_MIXERS,
    Budget,
    LRASettings,
    default_names,
    run_lra,
    runnable_names,
)

torch.set_num_threads(1)


class ToyCumulative(SequenceMixer):
    """A stand-in mixer: the running sum of a projection of the real tokens, projected back."""

    def __init__(self, d_model: int) -> None:
        super().__init__(d_model)
        self.inp = torch.nn.Linear(d_model, d_model)
        self.out = torch.nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, context=None, *, mask=None, causal=True, cache=None,
                need_weights=False, bias=None, position_ids=None):
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)  # (B, T)
        h = zero_padding(self.inp(x), keep).cumsum(1)  # (B, T, D)
        return self.result(self.out(torch.tanh(h)), cache)


@pytest.fixture
def toy(monkeypatch) -> str:
    monkeypatch.setitem(MIXER._entries, "toy_mixer", ToyCumulative)
    return "toy_mixer"


def test_default_names_add_the_mixers_but_the_lstm_and_every_mixer_is_runnable(toy):
    names = default_names()
    assert names[0] == "multi_head" and toy in names
    assert not set(RNN_MIXERS) & set(names) and "lstm" in RNN_MIXERS
    attention = [n for n in names if n in ATTENTION]
    assert names[:len(attention)] == attention  # attention first, then the mixers
    assert set(MIXER.names()) - set(RNN_MIXERS) <= set(names)
    assert set(MIXER.names()) | set(ATTENTION.names()) == set(runnable_names())
    for name in ("mamba", "rwkv", "retention"):
        assert (name in names) == (name in MIXER)


def test_settings_take_mixer_names_and_check_the_mixer_pooling(toy):
    settings = LRASettings.quick(names=["multi_head", toy], knobs={toy: {}})
    assert settings.mixer_pooling == "last"
    with pytest.raises(ValueError, match="mixer_pooling must be one of"):
        LRASettings(mixer_pooling="first")
    with pytest.raises(ValueError, match="sequence mixers.*no_such_mixer"):
        LRASettings(names=["no_such_mixer"])


def test_a_mixer_pools_the_last_token_where_attention_pools_the_first(toy):
    quick = LRASettings.quick()
    task = study.make_task("retrieval", replace(quick, retrieval_train=8, retrieval_test=4))
    assert task.pooling == "first"
    assert study.build_classifier("multi_head", task, quick).pooling == "first"
    model = study.build_classifier(toy, task, quick)
    assert model.pooling == "last" and model.causal
    mean = study.build_classifier(toy, task, replace(quick, mixer_pooling="mean"))
    assert mean.pooling == "mean"


def _tiny(tmp_path, names) -> LRASettings:
    return LRASettings(out=str(tmp_path / "lra"), tasks=["retrieval"], names=names, seeds=1,
                       d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0,
                       retrieval_length=40, retrieval_pairs=3, retrieval_keys=4,
                       retrieval_values=3, retrieval_min_distance=20, retrieval_train=64,
                       retrieval_test=32,
                       budgets={t: Budget(steps=3, batch_size=8, lr=1e-3, warmup_steps=1)
                                for t in ("listops", "retrieval", "pixels")})


def test_tiny_study_with_a_mixer_marks_it_in_the_report_and_plot(tmp_path, toy):
    results = run_lra(_tiny(tmp_path, ["multi_head", toy]), command="test")
    out = tmp_path / "lra"
    runs = {r["variant"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs[toy]["kind"] == "mixer" and runs[toy]["pooling"] == "last"
    assert runs["multi_head"]["kind"] == "attention" and runs["multi_head"]["pooling"] == "first"
    assert runs[toy]["steps"] == 3 and 0.0 <= runs[toy]["accuracy"] <= 1.0
    assert mixers(results) == [toy]
    text = (out / "results.md").read_text()
    assert "attention variants and recurrent mixers" in text
    assert f"{toy}: recurrent sequence mixers (nn/mixers), not attention" in text
    assert "last real token" in text and "mixers: last-token pooling (every task)" in text
    assert "associative recall" in text  # what retrieval asks of a recurrent state
    assert f"| {toy} |" in text and "- (recurrent mixer)" in text
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_mixers_says_nothing_of_them():
    settings = asdict(LRASettings.quick(tasks=["listops"], names=["multi_head"]))
    runs = [{"task": "listops", "variant": "multi_head", "seed": 0, "accuracy": 0.3,
             "params": 1, "train_seconds": 1.0, "kind": "attention"}]
    text = markdown({"command": "x", "machine": {}, "runs": runs, "wall_seconds": 1.0,
                     "tasks": {"listops": {"chance": 0.15}}, "settings": settings})
    assert "recurrent" not in text and "mixers:" not in text


@pytest.mark.parametrize("name", [n for n in MIXER.names() if n not in RNN_MIXERS])
def test_every_registered_mixer_trains_in_the_study(tmp_path, name):
    results = run_lra(_tiny(tmp_path, [name]), command="test")
    run, = results["runs"]
    assert "error" not in run, run
    assert run["kind"] == "mixer" and run["steps"] == 3


def test_cli_takes_mixer_names_and_the_mixer_pooling(tmp_path, capsys, monkeypatch, toy):
    original = study.LRASettings.quick

    def tiny_quick(**overrides):
        return original(**{**overrides, "retrieval_length": 40, "retrieval_pairs": 3,
                           "retrieval_keys": 4, "retrieval_values": 3,
                           "retrieval_min_distance": 20, "retrieval_train": 32,
                           "retrieval_test": 16})

    monkeypatch.setattr(study.LRASettings, "quick", staticmethod(tiny_quick))
    out = tmp_path / "cli"
    code = main(["bench", "lra", "--quick", "--tasks", "retrieval", "--names", toy,
                 "--seeds", "1", "--steps", "2", "--mixer-pooling", "mean", "--out", str(out)])
    assert code == 0
    assert "recurrent sequence mixers" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["mixer_pooling"] == "mean"
    assert saved["runs"][0]["pooling"] == "mean"
    assert main(["bench", "lra", "--names", "no_such_mixer", "--out", str(out)]) == 2
    assert "unknown attention or mixer ['no_such_mixer']" in capsys.readouterr().err


def test_report_with_only_mixers_beside_exact_attention_has_no_empty_ranking_notes():
    """With no published variant beside exact attention (mixers only), the ranking section
    says what was learned and nothing more: no empty '- **task**:' bullet."""
    from attnlab.studies.lra.report import markdown

    runs = [{"task": "listops", "variant": v, "seed": 0, "accuracy": a, "params": 1,
             "train_seconds": 1.0, "kind": kind}
            for v, a, kind in (("multi_head", 0.34, "attention"), ("rwkv", 0.28, "mixer"))]
    settings = asdict(LRASettings.quick(tasks=["listops"], names=["multi_head", "rwkv"],
                                        seeds=1))
    results = {"command": "x", "machine": {}, "runs": runs, "wall_seconds": 1.0,
               "tasks": {"listops": {"chance": 0.156}}, "settings": settings}
    text = markdown(results)
    assert "exact attention reaches 34.0%" in text
    assert not [line for line in text.splitlines() if line.strip() == "- **listops**:"]
