"""benchmarks/perception_targets.py records finished runs with their targets."""

from __future__ import annotations

import json


def write_run(folder, settings, metrics):
    folder.mkdir(parents=True)
    (folder / "train_settings.json").write_text(json.dumps(settings))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_records_runs_against_their_targets(tmp_path, load_benchmark):
    bench = load_benchmark("perception_targets")
    base = {"params": 10, "steps": 5, "train_seconds": 500.0, "train_examples_per_second": 9.0,
            "valid_accuracy": 0.9}
    image = write_run(tmp_path / "image", {"data": "builtin:fashion-mnist", "preset": "vit-fashion",
                                           "batch_size": 128},
                      {**base, "test_accuracy": 0.881})
    audio = write_run(tmp_path / "audio", {"data": "builtin:spoken-words", "preset": "ast-words",
                                           "batch_size": 64, "freq_masks": 2},
                      {**base, "test_accuracy": 0.97, "speakers": {"test": 48}})
    result = tmp_path / "record.json"
    assert bench.main(["--from-runs", str(image), str(audio), "--result", str(result)]) == 0
    runs = json.loads(result.read_text())["runs"]
    assert [(r["task"], r["meets_target"]) for r in runs] == [("image", False), ("audio", True)]
    assert runs[1]["held_out_speakers"] == 48
