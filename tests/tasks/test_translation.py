"""Translation end to end on a handful of pairs: overfit, resume, CLI commands, bad data."""

from __future__ import annotations

import json
import re

import pytest
import torch

from attnlab.cli.main import main
from attnlab.data.parallel import DataError
from attnlab.models.io import from_pretrained
from attnlab.tasks.translation import TranslationSettings, train_translation, translate
from attnlab.tokenizers import Tokenizer

PAIRS = [
    ("the cat sleeps", "ka miro dormas"),
    ("the dog eats bread", "ka hundo panok mangas"),
    ("a bird sings", "un vogo kantas"),
    ("the old cat eats fish", "ka miro alta fiskok mangas"),
    ("the dog sleeps", "ka hundo dormas"),
    ("a cat sings", "un miro kantas"),
]


def write_corpus(folder, pairs=PAIRS, repeat=4):
    folder.mkdir(parents=True, exist_ok=True)
    for split, times in (("train", repeat), ("valid", 1), ("test", 1)):
        (folder / f"{split}.src").write_text("".join(s + "\n" for s, _ in pairs) * times)
        (folder / f"{split}.tgt").write_text("".join(t + "\n" for _, t in pairs) * times)
    return folder


def settings(tmp_path, out="run", **overrides):
    values = dict(
        out=str(tmp_path / out), preset="transformer-tiny", data=str(write_corpus(tmp_path / "d")),
        src_lang="src", tgt_lang="tgt", vocab_size=300, max_tokens=256, max_steps=250,
        warmup_steps=50, lr_scale=1.0, label_smoothing=0.0, save_every=0, seed=0,
        model_overrides={"d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 128,
                         "dropout": 0.0},
    )
    values.update(overrides)
    return TranslationSettings(**values)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("overfit")
    s = settings(tmp_path, beam_size=3, length_penalty=0.8)  # not the CLI's defaults
    metrics = train_translation(s)
    return s, metrics


def test_overfits_a_handful_of_pairs(overfit_run):
    s, metrics = overfit_run
    assert metrics["bleu"] == pytest.approx(100.0)
    model, tokenizer = from_pretrained(s.out), Tokenizer.load(s.out)
    assert translate(model, tokenizer, [p[0] for p in PAIRS]) == [p[1] for p in PAIRS]
    assert translate(model, tokenizer, [p[0] for p in PAIRS], beam_size=1) == [
        p[1] for p in PAIRS]


def test_run_folder_contents(overfit_run):
    s, metrics = overfit_run
    from pathlib import Path

    out = Path(s.out)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json",
                 "loss_curve.png", "train_settings.json", "test.hyp"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("bleu", "chrf", "bleu_signature", "steps", "train_seconds",
                "train_tokens_per_second", "params", "buckets"):
        assert key in saved, key
    assert saved["steps"] == 250 and saved["split"] == "test"


def test_cli_translate_evaluate_average(overfit_run, capsys, tmp_path):
    s, _ = overfit_run
    assert main(["translate", "--model", s.out, "the dog eats bread"]) == 0
    assert capsys.readouterr().out.strip() == "ka hundo panok mangas"
    assert main(["evaluate", "--model", s.out, "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu"] == pytest.approx(100.0)
    src, ref = tmp_path / "x.src", tmp_path / "x.ref"
    src.write_text("the old cat eats fish\n")
    ref.write_text("ka miro alta fiskok mangas\n")
    assert main(["evaluate", "--model", s.out, "--src", str(src), "--ref", str(ref)]) == 0
    assert "BLEU 100.00" in capsys.readouterr().out
    assert main(["average", "--model", s.out, "--last", "3"]) == 2
    assert "holds 1 complete checkpoint" in capsys.readouterr().err
    averaged = tmp_path / "averaged"
    assert main(["average", "--model", s.out, "--last", "1", "--out", str(averaged)]) == 0
    capsys.readouterr()
    assert {p.name for p in averaged.iterdir()} >= {"config.json", "model.safetensors",
                                                    "tokenizer.json", "generation_config.json"}
    assert main(["translate", "--model", str(averaged), "the dog eats bread"]) == 0
    assert capsys.readouterr().out.strip() == "ka hundo panok mangas"


def test_the_folder_suggests_the_runs_beam_and_translate_uses_it(overfit_run, capsys,
                                                                  monkeypatch):
    from attnlab.cli import translate as translate_cli
    from attnlab.io import load_generation_config

    s, _ = overfit_run
    assert load_generation_config(s.out) == {"num_beams": s.beam_size,
                                             "length_penalty": s.length_penalty}
    used = []
    real = translate_cli.translate
    monkeypatch.setattr(translate_cli, "translate",
                        lambda *a, **k: used.append(k) or real(*a, **k))
    assert main(["translate", "--model", s.out, "the dog eats bread"]) == 0
    assert main(["translate", "--model", s.out, "--beam-size", "1", "the dog eats bread"]) == 0
    assert used == [{"beam_size": s.beam_size, "length_penalty": s.length_penalty},
                    {"beam_size": 1, "length_penalty": s.length_penalty}]
    capsys.readouterr()


def test_resume_equals_uninterrupted(tmp_path):
    # A run stopped at 4 steps and resumed to 8 equals a straight 8-step run when nothing is
    # fitted to the planned length: the budget schedule and the evenly spread evaluations are
    # (they follow --max-steps, which this resume changes), so the paper's schedule is used.
    common = dict(max_steps=8, save_every=2, schedule="inverse-sqrt", evaluations=0,
                  keep="last", model_overrides={
        "d_model": 32, "n_heads": 4, "n_layers": 1, "d_ff": 64, "dropout": 0.1})
    straight = train_translation(settings(tmp_path, "a", **common))
    train_translation(settings(tmp_path, "b", **{**common, "max_steps": 4}))
    resumed = train_translation(settings(tmp_path, "b", **common), resume=True)
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_0000008" / "training_state.pt",
                   weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step_0000008" / "training_state.pt",
                   weights_only=True)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert straight["bleu"] == resumed["bleu"]
    ma, mb = from_pretrained(tmp_path / "a"), from_pretrained(tmp_path / "b")
    for (name, p), q in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_bad_data_fails_before_training(tmp_path):
    folder = write_corpus(tmp_path / "bad")
    (folder / "train.tgt").write_text("one line\n")
    with pytest.raises(DataError, match="realign"):
        train_translation(settings(tmp_path, data=str(folder)))
    assert not (tmp_path / "run").exists()


def test_long_pairs_are_skipped_with_a_warning(tmp_path, caplog):
    pairs = [*PAIRS, (" ".join(["cat"] * 80), " ".join(["miro"] * 80))]
    folder = write_corpus(tmp_path / "long", pairs)
    s = settings(tmp_path, data=str(folder), max_len=40, max_steps=2)
    train_translation(s)
    assert "skipped 4 pair(s) longer than --max-len 40" in caplog.text


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train_translation(settings(tmp_path, "empty"), resume=True)


def test_average_last_tests_the_mean_of_the_newest_checkpoints(tmp_path):
    s = settings(tmp_path, "avg", max_steps=6, save_every=2, keep_last=3, average_last=2,
                 keep="last")
    metrics = train_translation(s)
    assert metrics["averaged_checkpoints"] == ["step_0000004", "step_0000006"]
    from attnlab.training.checkpoint import average_checkpoints, list_checkpoints

    expected = average_checkpoints(list_checkpoints(tmp_path / "avg" / "checkpoints")[-2:],
                                   from_pretrained(s.out))
    saved = from_pretrained(s.out)
    for (name, a), b in zip(saved.state_dict().items(), expected.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_evaluate_decodes_with_the_runs_settings(overfit_run, monkeypatch, capsys):
    """`attnlab evaluate` takes max_tokens, beam size and length penalty from the run's
    train_settings.json (not a fixed 6000 tokens); flags still override them."""
    import attnlab.cli.evaluate as evaluate

    s, _ = overfit_run
    seen = {}

    def fake(model, tokenizer, pairs, **kwargs):
        seen.update(kwargs, sentences=len(pairs))
        return {"bleu": 1.0, "hypotheses": []}

    monkeypatch.setattr(evaluate, "evaluate_pairs", fake)
    assert main(["evaluate", "--model", s.out, "--split", "test", "--json"]) == 0
    assert seen == {"beam_size": s.beam_size, "length_penalty": s.length_penalty,
                    "max_tokens": s.max_tokens, "progress": True, "sentences": len(PAIRS)}
    assert main(["evaluate", "--model", s.out, "--json", "--beam-size", "2",
                 "--max-tokens", "99"]) == 0
    assert seen["beam_size"] == 2 and seen["max_tokens"] == 99


def files_under(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("split", "fix"), [
    ("train", "a translation pair)"), ("valid", "a translation pair)"),
    ("test", "or remove the test files to score the valid split instead"),
])
def test_an_empty_split_stops_the_run_before_anything_is_written(tmp_path, split, fix):
    """Issue 16: empty test files were scored as the valid split, an empty valid split failed
    after the whole budget, empty train files blamed --max-len. (`settings` writes its own
    corpus in d/, so the bad one is c/.)"""
    folder = write_corpus(tmp_path / "c")
    (folder / f"{split}.src").write_text("")
    (folder / f"{split}.tgt").write_text("")
    before = files_under(folder)
    with pytest.raises(DataError, match=rf"c/{split}.src is empty \(the file holds no text\).*"
                                        rf"{re.escape(fix)}$"):
        train_translation(settings(tmp_path, data=str(folder)))
    assert not (tmp_path / "run").exists()
    assert files_under(folder) == before


def test_a_corpus_with_no_pair_under_max_len_stops_before_the_model_is_saved(tmp_path):
    with pytest.raises(DataError, match=r"d/train.src / .*d/train.tgt: all 24 pair\(s\) are "
                                        r"longer than --max-len 2 subwords \(the shortest pair "
                                        r"has \d+\), so none is left to train on; raise "
                                        r"--max-len to at least \d+"):
        train_translation(settings(tmp_path, max_len=2))
    # Checked once the BPE exists, before any file is kept: the run routine removes the
    # folder it had made for the new run.
    assert not (tmp_path / "run").exists()


def test_the_cli_names_the_empty_file_in_one_line(tmp_path, capsys):
    folder = write_corpus(tmp_path / "c")
    (folder / "valid.tgt").write_text("")
    assert main(["train", "translate", "--data", str(folder), "--src-lang", "src",
                 "--tgt-lang", "tgt", "--out", str(tmp_path / "run"), "--preset",
                 "transformer-tiny", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{folder}/valid.tgt is empty" in err
    assert not (tmp_path / "run").exists()


def test_no_test_files_scores_the_valid_split_and_says_so(tmp_path, caplog):
    folder = write_corpus(tmp_path / "c")
    (folder / "test.src").unlink()
    (folder / "test.tgt").unlink()
    metrics = train_translation(settings(tmp_path, data=str(folder), max_steps=1))
    assert f"{folder}: no test split (test files absent)" in caplog.text
    assert metrics["split"] == "valid"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["split"] == "valid"
    assert (tmp_path / "run" / "valid.hyp").is_file()
    assert not (tmp_path / "run" / "test.hyp").exists()


def test_a_rerun_needs_overwrite_which_studies_pass(tmp_path):
    from attnlab.errors import FolderError

    s = settings(tmp_path, max_steps=2, warmup_steps=1)
    first = train_translation(s)
    with pytest.raises(FolderError, match="already holds a run"):
        train_translation(s)
    again = train_translation(s, overwrite=True)  # what the compare study does per seed
    assert again["steps"] == first["steps"] == 2


def test_the_written_model_is_the_best_validation_checkpoint(overfit_run):
    """keep='best' (the default): the weights in the folder are those of the evaluation with
    the highest validation BLEU, recorded in metrics.json and checkpoints/best."""
    from pathlib import Path

    from attnlab.serialization import read_safetensors

    s, metrics = overfit_run
    out = Path(s.out)
    evaluations = metrics["evaluations"]
    assert len(evaluations) == s.evaluations  # 9 spread over the plan + the final one
    best = max(evaluations, key=lambda e: e["valid_bleu_greedy"])  # first of equals
    assert metrics["kept"] == {"weights": "best", "step": best["step"],
                               "metric": "valid_bleu_greedy",
                               "value": best["valid_bleu_greedy"]}
    final = read_safetensors(out / "model.safetensors")
    kept = read_safetensors(out / "checkpoints" / "best" / "model.safetensors")
    assert final.keys() == kept.keys()
    assert all(torch.equal(final[k], kept[k]) for k in final)


def test_the_schedule_follows_the_planned_steps(overfit_run):
    """The budget schedule warms up over 10% of the planned steps and decays to their end."""
    from pathlib import Path

    s, metrics = overfit_run
    state = torch.load(Path(s.out) / "checkpoints" / "step_0000250" / "training_state.pt",
                       weights_only=True)
    lrs = [h["lr"] for h in state["history"]]
    assert metrics["planned_steps"] == 250 and len(lrs) == 250
    assert max(range(250), key=lrs.__getitem__) == 24  # the peak at step 25 = 10% of 250
    assert lrs[-1] == pytest.approx(0.01 * lrs[24])  # the floor at the planned end


def test_metrics_put_the_model_beside_its_baselines(overfit_run):
    s, metrics = overfit_run
    baselines = metrics["baselines"]
    assert set(baselines) == {"copy_source", "most_frequent_target"}
    assert baselines["copy_source"]["bleu"] < 5  # another "language": copying scores ~0
    assert metrics["beats_copy"] is True
    assert metrics["auto"] == {"max_len": metrics["auto"]["max_len"]}  # preset and vocab given
    # 24 training pairs: the 99.5th percentile is the longest pair, so none is dropped
    assert metrics["max_len"] == metrics["auto"]["max_len"]["value"]
    assert metrics["max_len"] % 8 == 0 and metrics["train_pairs_over_max_len"] == 0


def test_averaging_needs_the_last_weights():
    with pytest.raises(ValueError, match="average_last=2 averages the last checkpoints, so it "
                                         "needs keep='last'"):
        TranslationSettings(average_last=2, keep_last=3)
