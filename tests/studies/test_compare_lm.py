"""`attnlab compare --family lm`: the settings' checks, every architecture matched to the
Transformer's non-embedding parameters, the probe generators (answers right by construction,
every other position masked) and their scoring, a micro study of every part writing its files
for each architecture, resuming without retraining, and the report's verdicts against the
papers."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.models import build_model
from attnlab.studies.compare import lm, lm_archs, lm_probes, lm_report
from attnlab.studies.compare.lm import LMCompareSettings, run_lm_compare
from attnlab.studies.compare.lm_archs import ARCHS

LINES = ["the cat sat on a mat and then it ran to the dog who was very happy with it"[i:] + " ."
         for i in range(40)]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("\n".join(LINES * 6) + "\n", encoding="utf-8")
    return str(path)


def micro(tmp_path, text: str, **overrides) -> LMCompareSettings:
    values = dict(
        out=str(tmp_path / "study"), text=text, architectures=["transformer", "gpt2"], seeds=1,
        d_model=32, n_layers=1, n_heads=2, tolerance=0.05, max_steps=3, tokenizer="chars",
        vocab_size=64, block_size=16, batch_size=4, warmup_steps=2, evaluations=2,
        valid_windows=4, lengths=[8, 16], tokens_per_batch=32, cost_repeats=1,
        contexts=[8, 16], new_tokens=2, probe_steps=2, probe_d_model=16, probe_n_layers=1,
        probe_n_heads=2, probe_batch=4, probe_examples=4, mqar_pairs=[2, 4],
        copy_distances=[4, 8], selective_lengths=[6, 10], selective_tokens=3, symbols=8)
    return LMCompareSettings(**{**values, **overrides})


# -- settings --------------------------------------------------------------------------------------

def test_settings_refuse_what_cannot_be_run(tmp_path):
    for values, message in [
        (dict(architectures=["gpt2"]), "must include 'transformer'"),
        (dict(architectures=["transformer", "lstm"]), "distinct names among"),
        (dict(architectures=["transformer", "transformer"]), "distinct names"),
        (dict(parts=["speed"]), "parts must be among"),
        (dict(probes=["recall"]), "probes must be among"),
        (dict(seeds=0), "seeds must be a positive integer, got 0"),
        (dict(max_steps=0), "max_steps must be a positive integer, got 0"),
        (dict(seconds=-1.0), "seconds must be a positive number, got -1.0"),
        (dict(tolerance=0.0), r"tolerance must be in \(0, 0.5\)"),
        (dict(lengths=[]), "lengths must be positive integers, at least one"),
        (dict(contexts=[0]), "contexts must be positive integers"),
        (dict(lrs={"nope": 1e-3}), "lrs must map architecture names"),
        (dict(d_model=36, n_heads=4), r"d_model \(36\) must be a multiple of twice the heads"),
        (dict(mqar_pairs=[40]), r"mqar size \(key-value pairs\) must be an integer in \[1, "
                                r"32\], got 40"),
        (dict(selective_lengths=[4]), r"selective size .* must be an integer in >= 8"),
        (dict(symbols=5), "symbols must be an even integer >= 4"),
    ]:
        with pytest.raises(ConfigError, match=message):
            LMCompareSettings(**{"architectures": ["transformer"], **values})
    quick = LMCompareSettings.quick(architectures=["transformer"])
    assert quick.seeds == 1 and quick.seconds == 70.0 and lm.expected_minutes(quick) < 5
    assert LMCompareSettings(contexts=[64, 8, 8], architectures=["transformer"]).contexts == \
        [8, 64]


def test_quick_mode_of_the_five_fits_fifteen_minutes():
    quick = LMCompareSettings.quick(architectures=["transformer"])
    quick.architectures = list(lm_archs.DEFAULT_ARCHS)  # the estimate only: presets not needed
    assert 10 <= lm.expected_minutes(quick) <= 15
    full = LMCompareSettings(architectures=["transformer"])
    full.architectures = list(lm_archs.DEFAULT_ARCHS)
    assert lm.expected_minutes(full) > 60


# -- equal parameters ------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [a for a in ARCHS if a != lm_archs.REFERENCE])
def test_each_architecture_is_matched_to_the_transformer(arch):
    reference = lm_archs.shape("transformer", 64, 2, 4)
    target = lm_archs.non_embedding("llama-tiny", reference, 100)
    matched = lm_archs.match(arch, target, d_model=64, n_layers=2, n_heads=4, vocab_size=100,
                       tolerance=0.03)
    assert abs(matched["gap"]) <= 0.03
    assert lm_archs.non_embedding(ARCHS[arch].preset, matched["values"], 100) == \
        matched["non_embedding"]
    assert matched["values"]["n_layers"] == 2 * ARCHS[arch].layers
    # the vocabulary is shared and left out of the count: another one matches the same shape
    assert lm_archs.non_embedding(ARCHS[arch].preset, matched["values"], 700) == \
        matched["non_embedding"]
    with pytest.raises(ConfigError, match=f"{arch}: no shape within tolerance"):
        lm_archs.match(arch, target + 1, d_model=64, n_layers=2, n_heads=4, vocab_size=100,
                 tolerance=1e-9)


def test_the_matched_widths_grow_with_the_target():
    small = lm_archs.match("gpt2", 20_000, d_model=32, n_layers=1, n_heads=2, vocab_size=50,
                     tolerance=0.05)
    large = lm_archs.match("gpt2", 80_000, d_model=32, n_layers=1, n_heads=2, vocab_size=50,
                     tolerance=0.05)
    assert large["values"]["d_model"] > small["values"]["d_model"]
    assert large["values"]["dropout"] == 0.0  # equal short budgets: dropout off


# -- probes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("probe", lm_probes.PROBES)
def test_probe_answers_are_right_by_construction(probe):
    spec = lm_probes.ProbeSpec(symbols=16, selective_tokens=4)
    rng = random.Random(0)
    for size in (4, 6, 8):
        ids, answers = lm_probes.make_example(probe, size, rng, spec)
        assert len(ids) == lm_probes.sequence_length(probe, size, spec)
        assert answers and all(0 < t < len(ids) for t in answers)
        if probe == "mqar":
            pairs = {ids[2 * i]: ids[2 * i + 1] for i in range(size)}
            assert len(pairs) == size  # distinct keys
            assert len(ids) == 4 * size and len(answers) == size
            assert sorted(ids[t - 1] for t in answers) == sorted(pairs)  # every key asked
            assert all(ids[t] == pairs[ids[t - 1]] for t in answers)
        elif probe == "copy":
            assert ids[size - 1] == lm_probes.SEPARATOR
            assert all(ids[t] == ids[t - size] for t in answers)  # d positions back
            assert answers == list(range(size, 2 * size - 1))
        else:
            region = ids[:size]
            data = [t for t in region if t != lm_probes.NOISE]
            assert len(data) == 4 and ids[size] == lm_probes.SEPARATOR
            assert [ids[t] for t in answers] == data  # in their order
    batch = lm_probes.make_batch(probe, 6, rng, spec, 5)
    labels, ids = batch["labels"], batch["input_ids"]
    asked = labels != lm_probes.IGNORE
    assert ids.shape == labels.shape and torch.equal(labels[asked], ids[asked])
    assert 0 < int(asked.sum(-1)[0]) < ids.size(1)  # only the answers count
    with pytest.raises(ValueError, match=f"{probe} size"):
        lm_probes.make_example(probe, 1000 if probe == "mqar" else 1, rng, spec)


class CopyOracle(torch.nn.Module):
    """Predicts the token `distance` - 1 positions back (right on every copy answer), or
    token 0 everywhere (`wrong`)."""

    def __init__(self, distance: int, vocab: int, wrong: bool = False) -> None:
        super().__init__()
        self.distance, self.vocab, self.wrong = distance, vocab, wrong

    def forward(self, input_ids, labels=None):
        B, T = input_ids.shape
        back = torch.arange(T) + 1 - self.distance  # position t predicts ids[t + 1 - d]
        target = input_ids[:, back.clamp_min(0)]  # (B, T)
        if self.wrong:
            target = torch.zeros_like(target)
        return type("Out", (), {"logits": torch.nn.functional.one_hot(target, self.vocab)
                                .float()})


def test_scoring_counts_only_the_answers():
    spec = lm_probes.ProbeSpec(symbols=16)
    right = lm_probes.score(CopyOracle(8, spec.vocab_size), "copy", 8, spec, examples=10)
    assert right == {"accuracy": 1.0, "exact": 1.0}
    wrong = lm_probes.score(CopyOracle(8, spec.vocab_size, wrong=True), "copy", 8, spec,
                            examples=10)
    assert wrong == {"accuracy": 0.0, "exact": 0.0}
    shifted = lm_probes.score(CopyOracle(7, spec.vocab_size), "copy", 8, spec, examples=10)
    assert shifted["accuracy"] < 0.5


def test_a_probe_run_trains_and_scores_every_size():
    def build(vocab_size):
        return build_model("llama-tiny", vocab_size=vocab_size, d_model=16, n_heads=2,
                              n_kv_heads=2, n_layers=1, d_ff=32, bos_token_id=0,
                              eos_token_id=0)

    run = lm_probes.run_probe(build, "mqar", [2, 4], seconds=None, max_steps=3, seed=1,
                              spec=lm_probes.ProbeSpec(symbols=8), batch_size=4, examples=8)
    assert run["steps"] == 3 and set(run["by_size"]) == {"2", "4"}
    for scores in run["by_size"].values():
        assert 0.0 <= scores["exact"] <= scores["accuracy"] <= 1.0


# -- the study -------------------------------------------------------------------------------------

def check_study(results: dict, s: LMCompareSettings, out) -> None:
    saved = json.loads((out / "results.json").read_text())
    archs = s.architectures
    assert list(saved["models"]) == archs and set(saved["perplexity"]) == set(archs)
    for arch in archs:
        assert abs(saved["models"][arch]["gap"]) <= s.tolerance
        run = saved["runs"][f"{arch}-s1"]
        assert run["steps"] == 3 and run["valid_loss"] > 0
        assert (out / "runs" / f"{arch}-s1" / "metrics.json").is_file()
    assert {r["model"] for r in saved["cost"]["records"]} == set(archs)
    assert all(r["tokens_per_second"] > 0 for r in saved["cost"]["records"])
    for arch in archs:
        rows = saved["decode"]["rows"][arch]
        assert [r["context"] for r in rows] == [8, 16]
        if lm.recurrent(arch):
            assert rows[0]["cache_bytes"] == rows[1]["cache_bytes"]
            assert arch in saved["decode"]["crossover"]
        else:
            assert rows[1]["cache_bytes"] > rows[0]["cache_bytes"]  # the KV cache grows
    accuracy = saved["probes"]["accuracy"]
    assert set(accuracy) == set(lm_probes.PROBES)
    assert set(accuracy["copy"]) == set(archs) and set(accuracy["mqar"]["transformer"]) == \
        {"2", "4"}
    report = (out / "results.md").read_text()
    for section in ("## Perplexity at equal parameters and equal steps",
                    "## Training cost against sequence length", "## Probes",
                    "## What the papers claim vs what we measured"):
        assert section in report
    for png in ("perplexity.png", "cost.png", "probes.png", "decode.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_micro_study_of_every_part_and_a_rerun_that_skips_it(tmp_path, text, capsys):
    s = micro(tmp_path, text)
    results = run_lm_compare(s)
    check_study(results, s, tmp_path / "study")
    printed = capsys.readouterr().out
    assert "[train 2/2] Transformer (GPT-2), seed 1: valid loss" in printed

    def fail(settings, state):
        raise AssertionError(f"{settings.out} trained again")

    again = run_lm_compare(s, runner=fail)
    printed = capsys.readouterr().out
    assert printed.count("(skipped)") == 2 and "[cost]" not in printed
    assert "[probe" not in printed and "[decode] Transformer" not in printed
    assert again["runs"].keys() == results["runs"].keys()
    # a part left out this time keeps what an earlier run of the same settings measured
    one = run_lm_compare(micro(tmp_path, text, parts=["cost"]), runner=fail)
    assert one["runs"].keys() == results["runs"].keys() and one["probes"]["accuracy"]
    assert one["cost"] == results["cost"]
    assert one.get("decode") == results["decode"]


@pytest.mark.parametrize("arch", [a for a in lm_archs.DEFAULT_ARCHS if a != lm_archs.REFERENCE])
def test_micro_study_with_each_recurrent_family(tmp_path, text, arch):
    s = micro(tmp_path, text, architectures=["transformer", arch])
    check_study(run_lm_compare(s), s, tmp_path / "study")


def fake_runner(calls: list, stop_after: int | None = None):
    """Writes the metrics a finished run leaves, without training."""
    def run(settings, state):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append((settings.preset, settings.seed, state))
        folder = lm.Path(settings.out)
        folder.mkdir(parents=True, exist_ok=True)
        loss = 3.0 + settings.seed / 10
        (folder / "metrics.json").write_text(json.dumps({
            "valid_loss": loss, "valid_perplexity": 20.0, "steps": 3, "train_tokens": 100,
            "train_stream_tokens": 1000, "train_tokens_per_second": 50, "params": 1,
            "train_seconds": 1.0}))
    return run


def test_an_interrupted_study_keeps_its_runs_and_a_rerun_trains_the_rest(tmp_path, text,
                                                                        capsys):
    s = micro(tmp_path, text, parts=["train"], seeds=2)
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        run_lm_compare(s, runner=fake_runner(calls, stop_after=3))
    saved = json.loads((tmp_path / "study" / "results.json").read_text())
    assert len(saved["runs"]) == 3 and (tmp_path / "study" / "results.md").is_file()
    done = list(calls)
    calls.clear()
    results = run_lm_compare(s, runner=fake_runner(calls))
    assert len(results["runs"]) == 4 and len(calls) == 1 and calls[0] not in done
    assert results["perplexity"]["transformer"]["valid_loss"]["n"] == 2
    capsys.readouterr()
    calls.clear()
    run_lm_compare(micro(tmp_path, text, parts=["train"], seeds=2, max_steps=4),
                   runner=fake_runner(calls))
    assert len(calls) == 4  # another budget is another experiment


# -- the report ------------------------------------------------------------------------------------

def synthetic(mamba_loss: float, mamba_ms: float, mamba_recall: float) -> dict:
    def spread(v):
        return {"mean": v, "std": 0.0, "min": v, "max": v, "n": 1}

    models = {a: {"label": ARCHS[a].label, "preset": ARCHS[a].preset, "values": {"d_model": 8},
                  "non_embedding": 1000, "gap": 0.0, "lr": 2e-3, "lr_reason": "r"}
              for a in ("transformer", "mamba")}
    decode = {"rows": {
        "transformer": [{"context": n, "ms_per_token": ms, "cache_bytes": 8 * n}
                        for n, ms in ((256, 1.0), (4096, 4.0))],
        "mamba": [{"context": n, "ms_per_token": mamba_ms, "cache_bytes": 64}
                  for n in (256, 4096)]}, "crossover": {"mamba": 4096}}
    recall = {"transformer": {"4": spread(0.99), "16": spread(0.95)},
              "mamba": {"4": spread(0.9), "16": spread(mamba_recall)}}
    selective = {"transformer": {"64": spread(0.3)}, "mamba": {"64": spread(mamba_recall)}}
    settings = LMCompareSettings.quick(architectures=["transformer"]).__dict__
    return {"settings": {**settings, "architectures": ["transformer", "mamba"]},
            "models": models, "runs": {},
            "perplexity": {"transformer": {"test_loss": spread(3.0), "steps": spread(300)},
                           "mamba": {"test_loss": spread(mamba_loss), "steps": spread(30)}},
            "decode": decode, "probes": {"accuracy": {"mqar": recall,
                                                      "selective": selective}}}


def test_the_claims_are_judged_from_the_numbers():
    agree = "\n".join(lm_report.claims(synthetic(3.01, 0.5, 0.4)))
    assert "Mamba matches Transformers of the same size" in agree and "**agrees**" in agree
    assert "**partly agrees** (faster, not 5x): 8.00x" not in agree
    assert "5x the Transformer's throughput (Fig. 8): **agrees**: 8.00x" in agree
    assert "MQAR): **agrees**: at 16 key-value pairs" in agree
    disagree = "\n".join(lm_report.claims(synthetic(3.5, 5.0, 0.93)))
    assert "**disagrees**: Mamba's test perplexity is 1.65x the Transformer's" in disagree
    assert "(Fig. 8): **disagrees**: 0.80x per token at a context of 4,096" in disagree
    assert "MQAR): **disagrees**" in disagree
    assert "Table 1): **agrees** (90% or more counts as solved): 93% over 64" in disagree
    assert "Table 1): **disagrees** (90% or more counts as solved): 40%" in agree
    # the Transformer did not learn selective copying: the verdict says so
    assert "The Transformer itself reached only 30% at size 64" in agree
    assert agree.count("The Transformer itself") == 1  # it learned MQAR
    partly = "\n".join(lm_report.claims(synthetic(3.0, 2.0, 0.9)))
    assert "**partly agrees** (faster, not 5x): 2.00x" in partly
    text = lm_report.markdown(synthetic(3.01, 0.5, 0.4))
    assert "Crossover, Mamba: first faster per token than the KV-cached Transformer at a " \
           "context of 4,096 tokens" in text
    assert "| Mamba | 0.50 | 0.50 |" in text  # ms per token at both contexts
    assert "Mamba took 10x fewer steps than the Transformer in the same time" in text
