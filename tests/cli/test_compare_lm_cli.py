"""`attnlab compare --family lm`: its flags, the flags of the other families refused with what
lm takes, --archs / --parts values checked per family, and the flags reaching the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.cli.main import main
from attnlab.studies.compare import lm


def test_help_lists_the_lm_family_and_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--family {text,vision,lm}" in text and "runs/compare-lm" in text
    assert "language-model comparison only (--family lm)" in text
    for flag in ("--train-seconds", "--steps", "--contexts", "--text"):
        assert flag in text
    assert "lm: transformer, mamba, rwkv, retnet" in " ".join(text.split())


def test_flags_of_other_families_are_refused_with_what_lm_takes(capsys):
    assert main(["compare", "--family", "lm", "--bleu-seconds", "5", "--fractions", "0.5"]) == 2
    err = capsys.readouterr().err
    assert ("--bleu-seconds: only for --family text; --fractions: only for --family vision; "
            "--family lm takes --out, --quick, --seeds, --archs, --parts, --probe-seconds, "
            "--lengths, --train-seconds, --steps, --contexts, --text") in err
    assert main(["compare", "--family", "vision", "--train-seconds", "5"]) == 2
    assert "--train-seconds: only for --family lm; --family vision takes" in \
        capsys.readouterr().err
    assert main(["compare", "--family", "vision", "--probe-seconds", "5"]) == 2
    assert "--probe-seconds: only for --family text or lm" in capsys.readouterr().err
    assert main(["compare", "--contexts", "64"]) == 2
    assert "--contexts: only for --family lm; --family text takes" in capsys.readouterr().err


def test_archs_and_parts_are_checked_per_family(capsys):
    assert main(["compare", "--family", "lm", "--archs", "transformer", "rnn-luong"]) == 2
    assert ("--archs rnn-luong: not a --family lm choice; expected some of transformer, "
            "mamba, rwkv, retnet, lstm-lm, gpt2") in capsys.readouterr().err
    assert main(["compare", "--archs", "mamba"]) == 2
    assert "--archs mamba: not a --family text choice" in capsys.readouterr().err
    assert main(["compare", "--family", "lm", "--parts", "bleu"]) == 2
    assert "--parts bleu: not a --family lm choice; expected some of train, cost, decode, " \
           "probes" in capsys.readouterr().err
    assert main(["compare", "--family", "lm", "--archs", "gpt2"]) == 2
    assert "architectures must include 'transformer'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--family", "lm", "--contexts", "0"])
    assert "--contexts" in capsys.readouterr().err


def test_the_flags_reach_the_settings(tmp_path, monkeypatch, capsys):
    seen = []

    def fake(settings):
        seen.append(settings)
        Path(settings.out).mkdir(parents=True, exist_ok=True)
        (Path(settings.out) / "results.md").write_text("# the report\n")
        return {}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lm, "run_lm_compare", fake)
    assert main(["compare", "--family", "lm", "--quick", "--out", str(tmp_path), "--archs",
                 "transformer", "gpt2", "--parts", "train", "probes", "--train-seconds", "20",
                 "--probe-seconds", "4", "--contexts", "512", "64", "--lengths", "32",
                 "--text", "some.txt", "--seeds", "2"]) == 0
    s = seen[0]
    assert (s.out, s.architectures, s.parts, s.seconds, s.probe_seconds, s.contexts,
            s.lengths, s.text, s.seeds) == (str(tmp_path), ["transformer", "gpt2"],
                                            ["train", "probes"], 20.0, 4.0, [64, 512], [32],
                                            "some.txt", 2)
    assert s.evaluations == 4  # the rest is quick mode's
    out = capsys.readouterr().out
    assert "4 LM runs of 20 s and 12 probe runs of 4 s, about" in out
    assert "minutes on 2 CPU cores" in out and "# the report" in out
    seen.clear()
    assert main(["compare", "--family", "lm", "--archs", "transformer"]) == 0
    assert seen[0].out == "runs/compare-lm" and seen[0].seconds == 300.0
    assert (tmp_path / "runs" / "compare-lm" / "results.md").is_file()


def test_steps_train_to_equal_steps_and_say_so(tmp_path, monkeypatch, capsys):
    seen = []

    def fake(settings):
        seen.append(settings)
        Path(settings.out).mkdir(parents=True, exist_ok=True)
        (Path(settings.out) / "results.md").write_text("# the report\n")
        return {}

    monkeypatch.setattr(lm, "run_lm_compare", fake)
    assert main(["compare", "--family", "lm", "--out", str(tmp_path), "--archs",
                 "transformer", "mamba", "--parts", "train", "--steps", "300"]) == 0
    assert seen[0].max_steps == 300
    out = capsys.readouterr().out
    assert "6 LM runs of 300 steps, about" in out and "probe runs" not in out  # 3 seeds
    assert main(["compare", "--family", "vision", "--steps", "5"]) == 2
    assert "--steps: only for --family lm" in capsys.readouterr().err
