"""`attnlab compare`: Table 1 counted on real layers, the long-range probes, the cost
measurement, the report's honesty notes, and the whole study end to end at tiny size."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.studies.compare import complexity, probes, throughput
from attnlab.studies.compare.report import markdown, notes
from attnlab.studies.compare.study import CompareSettings, run_compare


def test_table1_matches_the_paper_classes():
    attention = [complexity.measure("self_attention", n) for n in (8, 16)]
    recurrent = [complexity.measure("recurrent", n) for n in (8, 16)]
    conv = [complexity.measure("convolution", n, kernel_size=3) for n in (8, 16)]
    assert [r["sequential_steps"] for r in attention] == [1, 1]
    assert [r["layers_needed"] for r in attention] == [1, 1]
    assert [r["sequential_steps"] for r in recurrent] == [8, 16]  # one step per position
    assert [r["path_length"] for r in recurrent] == [8, 16]
    # a width-3 centred kernel reaches one position further per layer
    assert [r["layers_needed"] for r in conv] == [7, 15]
    assert [r["sequential_steps"] for r in conv] == [1, 1]
    assert complexity.growth(recurrent, "path_length") == pytest.approx(1.0)
    assert complexity.growth(attention, "path_length") == pytest.approx(0.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        complexity.build_layer("lstm")


@pytest.mark.parametrize("task", probes.TASKS)
def test_probe_examples_have_the_stated_distance(task):
    spec = probes.ProbeSpec()
    rng = random.Random(0)
    for d in (4, 9, 16):
        source, target = probes.make_example(task, d, rng, spec)
        assert target[-1] == probes.EOS and min(source) >= probes.FIRST_SYMBOL
        if task == "copy":
            assert target[:-1] == source and len(source) == d
        elif task == "reverse":
            assert target[:-1] == source[::-1]
        else:
            query = source[-1]
            key_at = source.index(query)  # keys are unique within an example
            assert source[key_at + 1] == target[0]
            assert len(source) - 1 - key_at == probes.distance_of(task, d, spec)


def test_probe_trains_and_scores_every_distance():
    def build(vocab_size):
        return build_model("transformer-tiny", vocab_size=vocab_size, dropout=0.0)

    result = probes.run_probe(build, "recall", [3, 7], seconds=1.0, seed=0)
    assert result["steps"] > 0 and set(result["by_distance"]) == {3, 7}
    for scores in result["by_distance"].values():
        assert 0.0 <= scores["exact"] <= scores["token_accuracy"] + 1e-9 <= 1.0 + 1e-9


def test_peak_bytes_sees_an_allocation():
    def allocate():
        x = torch.ones(4 * 2**20)  # 16 MiB
        del x

    assert throughput.peak_bytes(allocate) >= 16 * 2**20


def _fake_results(lstm_speed: float) -> dict:
    cost = [{"model": m, "length": n, "batch": 1, "tokens_per_second": speed,
             "step_seconds": 1.0, "peak_mib": mib, "params": 10}
            for m, speed, mib in (("transformer", 100.0, 50.0), ("rnn-luong", lstm_speed, 10.0))
            for n in (16, 512)]
    return {"settings": {"architectures": ["transformer", "rnn-luong"]},
            "machine": {"cpu": "test", "torch_threads": 2, "torch": "x"}, "cost": cost}


def test_notes_say_where_the_folklore_fails():
    text = "\n".join(notes(_fake_results(lstm_speed=300.0)))
    assert "rnn-luong trains faster than the Transformer at L = 16, 512" in text
    assert "(3.0x at L=16)" in text
    assert "peak memory barely grows from L=16 to L=512" in text  # 50 -> 50 MiB
    assert "faster than the Transformer" not in "\n".join(notes(_fake_results(50.0)))
    assert "| rnn-luong |" in markdown(_fake_results(300.0))


def test_learning_rate_scale_reaches_the_stated_peak():
    from attnlab.studies.compare.study import lr_scale_for
    from attnlab.training.schedule import inverse_sqrt_warmup

    scale = lr_scale_for(0.005, d_model=144, warmup_steps=100)
    assert inverse_sqrt_warmup(100, d_model=144, warmup_steps=100, scale=scale) == \
        pytest.approx(0.005)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="architectures must be a non-empty subset"):
        CompareSettings(architectures=["lstm"])
    with pytest.raises(ValueError, match="parts must be a subset"):
        CompareSettings(parts=["speed"])
    with pytest.raises(ValueError, match="no preset 'transformer-huge'"):
        CompareSettings(size="huge")


def test_study_end_to_end_at_tiny_size(tmp_path):
    settings = CompareSettings(
        out=str(tmp_path), size="tiny", seeds=1, lengths=[8, 16], tokens_per_batch=64,
        table1_lengths=[4, 8], bleu_seconds=2.0, train_size=200, test_size=12, vocab_size=300,
        beam_size=2, probe_seconds=0.5, probe_distances=[2, 4],
    )
    results = run_compare(settings)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved) >= {"settings", "machine", "cost", "table1", "bleu", "probes"}
    archs = settings.architectures
    assert {r["model"] for r in results["cost"]} == set(archs)
    assert set(results["bleu"]) == set(archs) and set(results["probes"]) == set(archs)
    for arch in archs:
        assert 0.0 <= results["bleu"][arch]["bleu"]["mean"] <= 100.0
    text = (tmp_path / "results.md").read_text()
    assert "## The usual comparison, measured" in text and "## Notes" in text
    for name in ("cost.png", "table1.png", "bleu.png", "probes.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_cli_rejects_unknown_architectures(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--archs", "lstm"])
    assert "invalid choice: 'lstm'" in capsys.readouterr().err
