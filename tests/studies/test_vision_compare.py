"""`attnlab compare --family vision`: ViT vs a ResNet of equal parameters against the share of
training data. The study end to end on the 8x8 digits with the tiny presets (a step limit
instead of a time budget), resuming after an interruption without redoing finished runs, the
report's verdicts against the paper, the memory measurement, and the CLI's flags."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.cli.main import main
from attnlab.errors import ConfigError
from attnlab.models import build_model
from attnlab.studies.compare import vision, vision_report
from attnlab.studies.compare.vision import VisionCompareSettings, run_vision_compare
from attnlab.studies.compare.vision_report import markdown, notes


def tiny(tmp_path, **overrides) -> VisionCompareSettings:
    values = dict(out=str(tmp_path / "study"), data="builtin:digits", fractions=[0.25, 1.0],
                  seeds=1, max_steps=3, evaluations=2, vit_preset="vit-tiny",
                  resnet_preset="resnet-tiny",
                  vit_overrides={"patch_size": 4, "d_model": 32, "d_ff": 64, "n_layers": 1},
                  batch_size=32, flip=False, crop_padding=1, throughput_batch=8,
                  throughput_rounds=2, memory_batch=8)
    return VisionCompareSettings(**{**values, **overrides})


def test_the_study_trains_both_models_at_each_fraction_and_reports(tmp_path, capsys):
    s = tiny(tmp_path)
    results = run_vision_compare(s)
    out = tmp_path / "study"
    assert set(results["runs"]) == {"vit-0.25-s1", "resnet-0.25-s1", "vit-1-s1", "resnet-1-s1"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"].keys() == results["runs"].keys()
    for run in saved["runs"].values():
        assert run["steps"] == 3 and 0 <= run["test_accuracy"] <= 1
        assert (out / "runs" / f"{run['arch']}-{run['fraction']:g}-s1" / "metrics.json").is_file()
    # a quarter of the training images, the same share of every class
    small, full = saved["runs"]["vit-0.25-s1"], saved["runs"]["vit-1-s1"]
    assert small["train_examples"] == pytest.approx(full["train_examples"] / 4, abs=10)
    # the ResNet's width was matched to the ViT's parameters
    vit, resnet = saved["models"]["vit"]["params"], saved["models"]["resnet"]["params"]
    assert abs(resnet / vit - 1) < 0.05 and saved["models"]["resnet"]["values"]["width"] > 8
    assert saved["runs"]["resnet-1-s1"]["params"] == resnet
    for arch in ("vit", "resnet"):
        assert saved["throughput"][arch]["images_per_second"] > 0
        assert saved["throughput"][arch]["forward_flops_per_image"] > 0
        assert saved["memory"][arch]["activation_bytes"] > 0
        assert saved["accuracy"][arch]["1"]["n"] == 1
    assert saved["machine"]["cpu_count"] and saved["versions"]["torch"] == torch.__version__
    report = (out / "results.md").read_text()
    assert "| 25% |" in report and "| 100% |" in report and "## Against the paper" in report
    assert "Dosovitskiy" in report and "## Throughput and memory" in report
    for png in ("accuracy_vs_data.png", "throughput.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert printed.count("test accuracy") == 4 and "[4/4] resnet-tiny on 100%" in printed


def fake_run(calls: list, stop_after: int | None = None):
    def run_cell(s, arch, values, fraction, seed, out):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append((arch, fraction, seed))
        accuracy = 0.5 + fraction / 4 + (0.1 if arch == "resnet" else 0.0)
        return {"arch": arch, "preset": s.preset(arch), "fraction": fraction, "seed": seed,
                "test_accuracy": accuracy, "valid_accuracy": accuracy, "steps": 3,
                "kept_step": 3, "stopped_by": "max_steps", "train_seconds": 1.0,
                "train_examples_per_second": 100.0, "train_examples": round(1000 * fraction),
                "epochs": 1.0, "params": 1, "wall_seconds": 1.0, "folder": str(out)}
    return run_cell


def test_an_interrupted_study_keeps_its_runs_and_a_rerun_skips_them(tmp_path, monkeypatch,
                                                                    capsys):
    s = tiny(tmp_path, seeds=2)
    calls: list = []
    # the training, the timing and the plots are tested above; here only what runs again
    monkeypatch.setattr(vision, "measure_cost", lambda s, values, image: ({}, {}))
    monkeypatch.setattr(vision_report, "plot_accuracy", lambda results, path: path)
    monkeypatch.setattr(vision, "run_cell", fake_run(calls, stop_after=3))
    with pytest.raises(KeyboardInterrupt):
        run_vision_compare(s)
    saved = json.loads((tmp_path / "study" / "results.json").read_text())
    assert len(saved["runs"]) == 3 and (tmp_path / "study" / "results.md").is_file()
    done = list(calls)
    calls.clear()
    monkeypatch.setattr(vision, "run_cell", fake_run(calls))
    results = run_vision_compare(s)
    assert len(results["runs"]) == 8 and len(calls) == 5
    assert not set(done) & set(calls)  # nothing finished was trained again
    assert capsys.readouterr().out.count("(skipped)") == 3
    calls.clear()
    run_vision_compare(s)
    assert calls == []
    # another budget is another experiment: every cell runs again
    run_vision_compare(tiny(tmp_path, seeds=2, max_steps=4))
    assert len(calls) == 8


def test_settings_refuse_what_cannot_be_run(tmp_path):
    for values, message in [
        (dict(fractions=[0.0]), r"fractions must be numbers in \(0, 1\]"),
        (dict(fractions=[]), "at least one"),
        (dict(fractions=[1.5]), r"got \[1.5\]"),
        (dict(seeds=0), "seeds must be a positive integer, got 0"),
        (dict(max_steps=0), "max_steps must be a positive integer or None, got 0"),
        (dict(seconds=-1.0), "seconds must be a positive number"),
        (dict(vit_preset="resnet-tiny"), "vit_preset must be a vit/deit preset, got "
                                         "'resnet-tiny'"),
        (dict(resnet_preset="nope"), "resnet_preset 'nope' is not a preset"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tiny(tmp_path, **values)
    assert VisionCompareSettings.quick().seeds == 1
    assert VisionCompareSettings(fractions=[1, 0.1, 0.1]).fractions == [0.1, 1.0]


def synthetic(gaps: dict[float, float]) -> dict:
    """results with ResNet at 80% everywhere and ViT 80% + gap (points)."""
    runs, accuracy = {}, {"vit": {}, "resnet": {}}
    for f, gap in gaps.items():
        for arch, acc in (("vit", 0.8 + gap / 100), ("resnet", 0.8)):
            runs[f"{arch}-{f:g}-s1"] = {"arch": arch, "fraction": f, "seed": 1,
                                        "test_accuracy": acc, "valid_accuracy": acc,
                                        "steps": 10, "kept_step": 10, "epochs": 1.0,
                                        "train_examples": int(1000 * f),
                                        "train_examples_per_second": 50.0}
            accuracy[arch][f"{f:g}"] = {"mean": acc, "std": 0.0, "min": acc, "max": acc,
                                        "n": 1}
    settings = {"seconds": 60.0, "max_steps": None, "evaluations": 3, "batch_size": 128,
                "flip": True, "seeds": 1, "match_params": True}
    return {"settings": settings, "runs": runs, "accuracy": accuracy}


def test_notes_say_where_the_measurement_agrees_with_the_paper():
    agrees = "\n".join(notes(synthetic({0.01: -9.0, 0.1: -4.0, 1.0: -1.5})))
    assert "The ResNet is ahead at every fraction: that agrees with the paper" in agrees
    assert "moves in ViT's favour as data grows (-9.0 at 1%, -1.5 at 100%)" in agrees
    assert "One seed per cell" in agrees and "No pre-training" in agrees
    disagrees = "\n".join(notes(synthetic({0.01: 2.0, 1.0: -3.0})))
    assert "ViT is ahead at 1%: that disagrees with the paper" in disagrees
    assert "does not move in ViT's favour" in disagrees
    table = markdown(synthetic({0.01: -9.0, 1.0: -1.5}))
    assert "| 1% | 10 | 71.0 | 80.0 | -9.0 |" in table


def test_saved_activations_count_what_backward_keeps():
    torch.manual_seed(0)
    model = build_model("resnet-tiny")
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    small = vision.saved_activation_bytes(model, x, labels)
    assert vision.saved_activation_bytes(model, x.repeat(4, 1, 1, 1), labels.repeat(4)) \
        == pytest.approx(4 * small, rel=0.05)  # activations grow with the batch
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert small > x.numel() * 4 and small != weights  # the input, not the weights


def test_cli_vision_help_and_flags_of_the_other_family(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--family", "vision", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--family {text,vision,lm}" in text and "--fractions" in text and "--seconds" in text
    assert "vision comparison only" in text and "--bleu-seconds" in text
    assert main(["compare", "--family", "vision", "--bleu-seconds", "5"]) == 2
    assert ("--bleu-seconds: only for --family text; --family vision takes --out, --quick, "
            "--seeds, --seconds, --fractions, --data") in capsys.readouterr().err
    assert main(["compare", "--seconds", "5", "--fractions", "0.5"]) == 2
    assert "--seconds, --fractions: only for --family vision" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--family", "vision", "--fractions", "2"])
    assert "expected a fraction in (0, 1], got 2" in capsys.readouterr().err
