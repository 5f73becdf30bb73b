"""`attnlab scaling`: a tiny real sweep (3 sizes and 2 MoE runs, a few steps on a small text
file) writes its run folders, results, report and plots; `--from` refits them without
training; flags `--from` cannot take are refused in one line."""

from __future__ import annotations

import json

from attnlab.cli.main import main
from attnlab.studies.scaling import sweep


def test_a_tiny_sweep_writes_runs_report_and_plots_then_refits_from_them(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n"
                            for i in range(160)))
    out = tmp_path / "study"
    moe = sweep.moe_supported()
    code = main(["scaling", "--quick", "--text", str(text), "--sizes", "13k", "56k", "151k",
                 "--moe-sizes", "13k", "--moe", "on" if moe else "off", "--steps", "6",
                 "--bootstrap", "8", "--out", str(out), "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "about" in printed and "minutes" in printed and "report.md" in printed
    results = json.loads((out / "results.json").read_text())
    names = {"dense-13k-6", "dense-56k-6", "dense-151k-6"}
    if moe:
        names |= {"moe8-top1-13k-6", "moe8-top2-13k-6"}
    assert set(results["runs"]) == names
    for name in names:
        assert (out / "runs" / name / "metrics.json").is_file()
        curve = results["runs"][name]["curve"]
        assert curve[-1]["step"] == 6 and curve[-1]["tokens"] == 6 * 16 * 64
    for name in ("report.json", "report.md", "loss_vs_compute.png", "loss_vs_n.png",
                 "loss_vs_d.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["size_law"]["law"]["points"] == 3 and report["chinchilla"]["runs"] == 3
    assert len(report["moe"]) == (2 if moe else 0)

    (out / "report.md").unlink()
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    assert main(["scaling", "--from", str(out), "--bootstrap", "4"]) == 0
    assert (out / "report.md").is_file()
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing trained again


def test_from_refuses_sweep_flags_and_a_folder_without_runs(tmp_path, capsys):
    assert main(["scaling", "--from", str(tmp_path), "--quick"]) == 2
    assert "takes no --quick" in capsys.readouterr().err
    assert main(["scaling", "--from", str(tmp_path)]) == 2
    assert "no runs/ folder" in capsys.readouterr().err
