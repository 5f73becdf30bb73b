"""The lm task's MoE logging (tasks/lm_moe.py and LanguageModelTask): each step's means of the
loss terms and expert load, the collapse warning, metrics.json's expert load, and a validation
loss that leaves the auxiliary terms out. On outputs made here (the fields CausalLMOutput
carries), so the rules are checked exactly; then on a real MoE model for a few steps."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnlab.tasks.language_model import LanguageModelTask, LMSettings, validation_loss
from attnlab.tasks.lm_moe import ExpertMonitor


def output(lm: float | torch.Tensor, aux: float, load: list[list[float]], z: float = 0.0,
           dropped: float = 0.0) -> SimpleNamespace:
    """An MoE model's output with these figures (what CausalLMOutput holds with labels)."""
    lm = torch.as_tensor(lm)
    return SimpleNamespace(loss=lm + 0.01 * aux, lm_loss=lm,
                           aux_loss=torch.tensor(aux), z_loss=torch.tensor(z),
                           expert_load=torch.tensor(load), dropped_fraction=torch.tensor(dropped))


def test_a_step_is_the_mean_of_its_micro_batches_and_load_is_scaled_by_experts():
    monitor = ExpertMonitor(layers=[1, 3])
    monitor.add(output(2.0, 1.0, [[0.5, 0.5, 0.0, 0.0], [0.25] * 4], z=4.0, dropped=0.1))
    monitor.add(output(4.0, 3.0, [[0.5, 0.3, 0.2, 0.0], [0.25] * 4], z=2.0, dropped=0.3))
    figures = monitor.step()
    assert figures == pytest.approx({"lm_loss": 3.0, "aux_loss": 2.0, "z_loss": 3.0,
                                     "dropped": 0.2, "load_min": 0.0, "load_max": 2.0})
    assert monitor.step() == {}  # drained
    monitor.add(output(1.0, 1.0, [[0.25] * 4, [0.25] * 4]))
    assert monitor.step()["load_max"] == pytest.approx(1.0)  # balanced: 1/E each, times E
    monitor.end_window()  # an evaluation after step 2
    monitor.add(output(1.0, 1.0, [[0.4, 0.2, 0.2, 0.2], [0.25] * 4]))
    monitor.step()
    monitor.end_window()
    summary = monitor.summary()
    assert summary["window"]["steps"] == 1 and summary["run"]["steps"] == 3
    assert summary["window"]["expert_load"] == [[0.4, 0.2, 0.2, 0.2], [0.25] * 4]
    # the run: steps 1-3 (layer 0: [.5 .4 .1 0], [.25 .25 .25 .25], [.4 .2 .2 .2])
    assert summary["run"]["expert_load"][0] == pytest.approx([1.15 / 3, 0.85 / 3, 0.55 / 3,
                                                              0.45 / 3], abs=1e-5)
    assert summary["layers"] == [1, 3] and summary["collapsed"] == []


def test_a_dense_output_logs_nothing():
    monitor = ExpertMonitor()
    monitor.add(SimpleNamespace(loss=torch.tensor(1.0), lm_loss=torch.tensor(1.0),
                                aux_loss=None, expert_load=None))
    assert monitor.step() == {} and monitor.summary() is None


def test_an_expert_below_its_share_for_many_steps_is_warned_about_once(caplog):
    monitor = ExpertMonitor(collapse_share=0.1, collapse_steps=3, layers=[0, 2])
    starved = [[0.5, 0.49, 0.01], [1 / 3] * 3]  # layer 0's expert 2: 0.01 < 0.1 / 3
    with caplog.at_level(logging.WARNING, logger="attnlab.tasks.lm_moe"):
        for load in (starved, starved, [[0.4, 0.4, 0.2], [1 / 3] * 3],  # recovers: count resets
                     starved, starved):
            monitor.add(output(1.0, 1.0, load))
            monitor.step()
        assert monitor.collapsed == [] and not caplog.records
        for _ in range(4):
            monitor.add(output(1.0, 1.0, starved))
            monitor.step()
    assert monitor.collapsed == [{"moe_layer": 0, "layer": 0, "expert": 2, "after_steps": 6}]
    assert len(caplog.records) == 1  # once, not every step after
    assert "layer 0 expert 2" in caplog.text and "for 3 consecutive steps" in caplog.text


class FakeMoE(nn.Module):
    """Returns a fixed next-token loss and aux terms, whatever the input (the task's view of
    an MoE causal LM)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, ids, labels=None):
        return output(2.0 + 0 * self.w, 5.0, [[0.75, 0.25]])


def test_the_task_logs_each_step_and_validates_on_the_next_token_loss_alone(tmp_path):
    task = LanguageModelTask(LMSettings(text="x", out=str(tmp_path)))
    model = FakeMoE()
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long)}
    loss, tokens = task.loss(model, batch)
    assert loss.item() == pytest.approx(2.05) and tokens == 8  # the training loss has aux
    task.loss(model, batch)
    assert task.step_metrics() == pytest.approx({"lm_loss": 2.0, "aux_loss": 5.0,
                                                 "z_loss": 0.0, "dropped": 0.0,
                                                 "load_min": 0.5, "load_max": 1.5})
    assert validation_loss(model, torch.arange(20), block_size=4) == pytest.approx(2.0)


def tiny_text(tmp_path):
    words = "the cat sat on a warm mat while the dog ran after a red ball".split()
    rng = torch.Generator().manual_seed(0)
    lines = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (8,),
                                                           generator=rng)) for _ in range(120)]
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("preset, overrides", [
    ("mixtral-tiny", {}),
    ("gpt2-tiny", {"moe": {"experts": 4, "top_k": 1, "capacity_factor": 1.0,
                           "normalize_top_k": False}}),
])
def test_an_moe_model_trains_and_metrics_json_holds_its_routing(tmp_path, preset, overrides):
    from attnlab.models import list_models
    from attnlab.tasks.language_model import train_language_model

    if preset not in list_models():
        pytest.skip(f"{preset} is not a preset yet")
    s = LMSettings(text=str(tiny_text(tmp_path)), out=str(tmp_path / "run"), preset=preset,
                   model_overrides=overrides, vocab_size=300, block_size=16, batch_size=4,
                   max_steps=6, warmup_steps=2, save_every=0, evaluations=2, seed=0)
    train_language_model(s)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    history = metrics["moe"]["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert all(h["aux_loss"] > 0 and 0 <= h["load_min"] <= 1 <= h["load_max"]
               for h in history)
    load = torch.tensor(metrics["expert_load"])  # (MoE layers, experts), rows sum to 1
    assert load.shape[0] == len(metrics["moe"]["layers"]) >= 1
    torch.testing.assert_close(load.sum(-1), torch.ones(load.shape[0]), atol=1e-4, rtol=0)
    assert metrics["moe"]["window"]["steps"] == 3  # the steps after the mid-run evaluation
    if overrides:
        assert all(0 <= h["dropped"] < 1 for h in history)
    # validation is the next-token loss alone: the kept weights' lm_loss, not lm + aux
    assert metrics["valid_loss"] == metrics["evaluations"][-1]["valid_loss"]
