"""`attnlab bench lra`: the three generators (ListOps evaluator on hand-written expressions,
lengths, labels; one-hop retrieval labels by construction, distances and balance; pixel
sequences and a disjoint split), the classifier with every registered variant and its pooling,
a tiny study end to end, and the CLI."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict

import pytest
import torch
from torch import Tensor

from attnlab.cli.main import main
from attnlab.models.sequence_classifier import SequenceClassifier
from attnlab.nn.attention import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.studies.lra import listops, pixels, retrieval, study
from attnlab.studies.lra.data import PAD_ID
from attnlab.studies.lra.report import markdown
from attnlab.studies.lra.study import Budget, LRASettings, default_names, run_lra

torch.set_num_threads(1)


@pytest.mark.parametrize("expression, value", [
    ("7", 7),
    ("[MAX 2 9 0 ]", 9),
    ("[MIN 4 7 3 ]", 3),
    ("[MED 1 8 5 ]", 5),
    ("[MED 1 2 ]", 1),  # even count: mean of the middle two (1.5), rounded down
    ("[MED 3 9 4 8 ]", 6),  # (4 + 8) / 2
    ("[SM 5 6 7 ]", 8),  # 18 mod 10
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[SM [MAX 3 8 ] [MIN 9 [MED 2 6 4 ] ] 1 ]", 3),  # 8 + 4 + 1 = 13
    ("[MIN [SM 9 9 ] [MAX [MED 0 0 9 ] 5 ] ]", 5),  # min(8, max(0, 5))
])
def test_listops_evaluator_on_hand_written_expressions(expression, value):
    assert listops.evaluate(expression) == value


@pytest.mark.parametrize("bad", ["[MAX 1 2", "]", "[MAX 1 ] 2", "[POW 2 3 ]", "12", "[MIN ]"])
def test_listops_evaluator_rejects_malformed_expressions(bad):
    with pytest.raises(ValueError):
        listops.evaluate(bad)


def test_listops_generator_lengths_labels_and_split():
    task = listops.make_listops(train_size=300, test_size=100, min_length=20, max_length=100,
                                seed=3)
    assert task.seq_len == 128 and task.n_classes == 10 and task.vocab == listops.VOCAB
    for split in (task.train, task.test):
        lengths = split.attention_mask.sum(1)  # (N,)
        assert int(lengths.min()) >= 20 and int(lengths.max()) <= 100
        for ids, keep, label in zip(split.input_ids[:50], split.attention_mask[:50],
                                    split.labels[:50], strict=True):
            tokens = [task.vocab[i] for i in ids[keep].tolist()]
            assert listops.evaluate(tokens) == int(label)  # stored label = evaluated value
            assert (ids[~keep] == PAD_ID).all()
    counts = Counter(task.train.labels.tolist())
    assert set(counts) == set(range(10))  # every class occurs
    assert max(counts.values()) < 0.4 * len(task.train)  # no class dominates
    train = {tuple(row.tolist()) for row in task.train.input_ids}
    assert not train & {tuple(row.tolist()) for row in task.test.input_ids}


def test_listops_random_expressions_follow_the_depth_and_argument_rules():
    rng = random.Random(0)
    for _ in range(200):
        tokens, value = listops.random_expression(rng, max_depth=4, max_args=3)
        assert listops.evaluate(tokens) == value
        open_args: list[int] = []  # argument count of each open operator
        deepest = 0
        for token in tokens:
            if token == "]":
                assert 2 <= open_args.pop() <= 3
                continue
            if open_args:
                open_args[-1] += 1
            if token.startswith("["):
                open_args.append(0)
                deepest = max(deepest, len(open_args))
        assert deepest <= 3  # the root is depth 1 and depth max_depth holds only digits


def test_listops_sampler_names_an_impossible_request():
    with pytest.raises(ValueError, match="min_length <= max_length"):
        listops.sample(1, random.Random(0), min_length=10, max_length=5, max_depth=3,
                       max_args=3)
    with pytest.raises(ValueError, match="found only"):
        listops.sample(5, random.Random(0), min_length=40, max_length=40, max_depth=2,
                       max_args=2, max_tries=100)


def _decode_retrieval(ids: list[int], n_keys: int, n_values: int):
    """(queried key, {position: (key, value)} of the pair tokens, filler positions)."""
    first_pair = len(retrieval.SPECIALS) + n_keys
    pairs = {i: retrieval.split_pair(t, n_keys=n_keys, n_values=n_values)
             for i, t in enumerate(ids) if t >= first_pair}
    fillers = [i for i, t in enumerate(ids) if t == retrieval.FILL_ID]
    return ids[0] - len(retrieval.SPECIALS), pairs, fillers


def test_retrieval_is_one_hop_far_balanced_and_labelled_by_construction():
    n_keys, n_values, n_pairs, d = 12, 4, 10, 40
    task = retrieval.make_retrieval(train_size=200, test_size=50, length=100, n_pairs=n_pairs,
                                    n_keys=n_keys, n_values=n_values, min_distance=d, seed=1)
    assert task.seq_len == 128 and task.n_classes == n_values and task.pooling == "first"
    assert task.vocab_size == 2 + n_keys + n_keys * n_values
    queried_at = []
    for split in (task.train, task.test):
        for ids, keep, label in zip(split.input_ids, split.attention_mask, split.labels,
                                    strict=True):
            seq = ids[keep].tolist()
            assert len(seq) == 100 and (ids[~keep] == PAD_ID).all()
            key, pairs, fillers = _decode_retrieval(seq, n_keys, n_values)
            assert task.vocab[seq[0]] == f"[Q k{key}]"  # the query token sits at position 0
            assert len(pairs) == n_pairs and len(fillers) == 100 - 1 - n_pairs
            assert min(pairs) >= d  # every pair, the queried one included, >= d away
            keys = [k for k, _ in pairs.values()]
            assert len(set(keys)) == n_pairs and keys.count(key) == 1  # one-hop: one match
            at, (_, value) = next((i, kv) for i, kv in pairs.items() if kv[0] == key)
            assert value == int(label)  # the label is the queried pair's value
            assert task.vocab[seq[at]] == f"k{key}:v{value}"
            counts = Counter(v for _, v in pairs.values())  # balanced: 10 = 2 x 4 + 2 distinct
            assert set(counts.values()) == {2, 3} and sum(c == 3 for c in counts.values()) == 2
            queried_at.append(at)
    assert min(queried_at) < d + 10 and max(queried_at) > 90  # all of the far region is used
    assert abs(task.majority_accuracy() - 1 / n_values) < 0.15  # labels roughly uniform
    rng = random.Random(0)  # the bound is exact: the nearest allowed slot is used
    distances = {retrieval.make_example(rng, length=20, n_pairs=4, n_keys=4, n_values=4,
                                        min_distance=13)[2] for _ in range(500)}
    assert distances == set(range(13, 20))


def test_retrieval_rejects_impossible_settings():
    good = dict(train_size=1, test_size=1, length=20, n_pairs=4, n_keys=4, n_values=4,
                min_distance=10)
    for bad, match in ((dict(n_keys=3), "n_keys"), (dict(n_values=1), "n_values"),
                       (dict(n_pairs=0), "n_pairs"), (dict(min_distance=0), "min_distance"),
                       (dict(length=13), "length must be >= min_distance")):
        with pytest.raises(ValueError, match=match):
            retrieval.make_retrieval(**{**good, **bad})


def _retrieval_batch(length: int = 128) -> tuple[Tensor, Tensor]:
    task = retrieval.make_retrieval(train_size=4, test_size=1, length=length, n_pairs=4,
                                    n_keys=4, n_values=4, min_distance=65, seed=0)
    return task.train.input_ids, task.train.attention_mask


def test_first_pooling_reads_position_0_only():
    torch.manual_seed(0)
    ids, keep = _retrieval_batch()
    model = SequenceClassifier("multi_head", vocab_size=22, n_classes=4, max_length=128,
                               d_model=16, n_heads=2, n_layers=1, d_ff=32, pooling="first")
    seen: dict[str, Tensor] = {}

    def keep_grad(module, inputs, output):
        output.retain_grad()
        seen["hidden"] = output

    model.final_norm.register_forward_hook(keep_grad)
    model(ids, keep).logits.sum().backward()
    grad = seen["hidden"].grad  # (B, T, D): how the logits depend on each final hidden state
    assert grad[:, 1:].abs().max() == 0 and grad[:, 0].abs().min() > 0
    with torch.no_grad():
        head = model.head(seen["hidden"][:, 0])  # (B, n_classes)
    assert torch.allclose(model(ids, keep).logits, head)
    mean = SequenceClassifier("multi_head", vocab_size=22, n_classes=4, max_length=128,
                              d_model=16, n_heads=2, n_layers=1, d_ff=32)
    assert mean.pooling == "mean"
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier("multi_head", vocab_size=22, n_classes=4, max_length=128,
                           pooling="max")


@pytest.mark.parametrize("name, reaches", [("sliding_window", False), ("longformer", True),
                                           ("bigbird", True), ("multi_head", True)])
def test_min_distance_puts_the_pairs_beyond_a_window_of_64_but_not_global_tokens(name,
                                                                                  reaches):
    """With one layer and first pooling, the answer reaches the classifier only through
    position 0's own attention row: a window of 64 never sees a pair >= 65 away, Longformer's
    global first token and BigBird's global first block do."""
    torch.manual_seed(0)
    ids, keep = _retrieval_batch()
    model = SequenceClassifier(name, vocab_size=22, n_classes=4, max_length=128, d_model=16,
                               n_heads=2, n_layers=1, d_ff=32, pooling="first").eval()
    shuffled = ids.clone()
    shuffled[:, 65:] = shuffled[:, 65:].flip(-1)  # move the pairs within the far region
    with torch.no_grad():
        moved = (model(ids, keep).logits - model(shuffled, keep).logits).abs().max()
    assert (moved > 1e-4) == reaches


def test_pixels_are_1024_tokens_of_ten_classes_with_a_disjoint_fixed_split():
    task = pixels.make_pixels(levels=16)
    assert task.seq_len == 1024 and task.n_classes == 10
    assert task.train.input_ids.shape[1] == 1024 and bool(task.train.attention_mask.all())
    assert len(task.train) + len(task.test) == 1797
    assert int(task.train.input_ids.min()) >= 1 and int(task.train.input_ids.max()) <= 16
    assert set(task.test.labels.tolist()) == set(range(10))
    images, _ = pixels.load_digit_images()
    rows = {tuple(r.tolist()) for r in pixels.to_tokens(images, 16) + 1}
    assert len(rows) > 1700  # images are (nearly all) distinct, so a row identifies an image
    train = {tuple(r.tolist()) for r in task.train.input_ids}
    test = {tuple(r.tolist()) for r in task.test.input_ids}
    assert len(train & test) <= 5  # only duplicate images could be in both
    again = pixels.make_pixels(levels=16)
    assert torch.equal(again.test.input_ids, task.test.input_ids)  # the split is fixed
    with pytest.raises(ValueError, match="levels"):
        pixels.to_tokens(images[:1], 1)


def _efficient_names() -> list[str]:
    return [n for n in ATTENTION.names() if isinstance(ATTENTION.get(n), type)
            and issubclass(ATTENTION.get(n), EfficientAttention)]


@pytest.mark.parametrize("name", default_names())
def test_classifier_forward_with_every_registered_variant(name):
    torch.manual_seed(0)
    model = SequenceClassifier(name, vocab_size=12, n_classes=3, max_length=64, d_model=16,
                               n_heads=2, n_layers=1, d_ff=32)
    ids = torch.randint(1, 12, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 40:] = False
    out = model(ids, mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())


def test_default_names_are_multi_head_and_the_efficient_variants():
    names = default_names()
    assert names[0] == "multi_head"
    assert "additive" not in names and "multiplicative" not in names
    assert set(_efficient_names()) <= set(names)


class ToyWindowed(EfficientAttention):
    """A stand-in efficient variant: takes max_length and key-padding masks only."""

    def __init__(self, d_model: int, n_heads: int, *, max_length: int) -> None:
        super().__init__(d_model, n_heads)
        self.max_length = max_length

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep, mask, causal,
               need_weights) -> tuple[Tensor, None]:
        scores = q @ k.transpose(-2, -1)  # (B, H, T, S)
        if key_keep is not None:
            scores = scores.masked_fill(~key_keep[:, None, None, :], -1e9)
        return torch.softmax(scores, -1) @ v, None  # (B, H, T, Dh)


def test_classifier_passes_max_length_and_padding_masks_to_a_variant(monkeypatch):
    monkeypatch.setitem(ATTENTION._entries, "toy_windowed", ToyWindowed)
    model = SequenceClassifier("toy_windowed", vocab_size=10, n_classes=2, max_length=32,
                               d_model=8, n_heads=2, n_layers=2, d_ff=16)
    assert model.layers[0].self_attn.max_length == 32
    ids = torch.randint(1, 10, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[0, 20:] = False
    full = model(ids, mask).logits
    changed = ids.clone()
    changed[0, 20:] = 3  # what sits under the padding must not matter
    assert torch.allclose(model(changed, mask).logits, full, atol=1e-6)


def test_classifier_rejects_bad_arguments():
    with pytest.raises(ValueError, match="position must be an absolute scheme"):
        SequenceClassifier("multi_head", vocab_size=5, n_classes=2, max_length=8, d_model=8,
                           n_heads=2, position="rope")
    with pytest.raises(ValueError, match="n_classes"):
        SequenceClassifier("multi_head", vocab_size=5, n_classes=0, max_length=8)
    model = SequenceClassifier("multi_head", vocab_size=5, n_classes=2, max_length=8,
                               d_model=8, n_heads=2)
    with pytest.raises(ValueError, match="max_length=8"):
        model(torch.ones(1, 9, dtype=torch.long))


def _tiny(tmp_path, **overrides) -> LRASettings:
    values = dict(out=str(tmp_path / "lra"), tasks=["retrieval"], names=["multi_head"],
                  seeds=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0,
                  retrieval_length=40, retrieval_pairs=3, retrieval_keys=4, retrieval_values=3,
                  retrieval_min_distance=20, retrieval_train=64, retrieval_test=32,
                  budgets={t: Budget(steps=3, batch_size=8, lr=1e-3, warmup_steps=1)
                           for t in ("listops", "retrieval", "pixels")})
    return LRASettings(**{**values, **overrides})


def test_tiny_study_writes_json_markdown_and_png(tmp_path, monkeypatch):
    # multi_head and a registered efficient variant (the stand-in while none is registered)
    efficient = _efficient_names()
    if not efficient:
        monkeypatch.setitem(ATTENTION._entries, "toy_windowed", ToyWindowed)
        efficient = ["toy_windowed"]
    settings = _tiny(tmp_path, names=["multi_head", efficient[0]],
                     task_model={"retrieval": {"n_heads": 4}})
    results = run_lra(settings, command="attnlab bench lra (test)")
    out = tmp_path / "lra"
    saved = json.loads((out / "results.json").read_text())
    assert {"command", "settings", "machine", "tasks", "runs", "wall_seconds"} <= set(saved)
    assert saved["tasks"]["retrieval"]["seq_len"] == 64
    assert saved["tasks"]["retrieval"]["pooling"] == "first"
    assert len(saved["runs"]) == len(settings.names)
    for run in saved["runs"]:
        assert {"task", "variant", "seed", "accuracy", "params", "steps", "train_seconds"} <= set(
            run), run
        assert run["steps"] == 3 and 0.0 <= run["accuracy"] <= 1.0
    text = (out / "results.md").read_text()
    assert "| multi_head |" in text and "36.37" in text and "NOT LRA's Retrieval" in text
    assert "first-token pooling (retrieval)" in text and "(retrieval: n_heads 4)" in text
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert results["runs"] == saved["runs"]


def test_study_resumes_and_records_a_failing_variant(tmp_path, monkeypatch):
    class Broken(ToyWindowed):
        def attend(self, *args, **kwargs):
            raise RuntimeError("this length is not supported")

    monkeypatch.setitem(ATTENTION._entries, "toy_broken", Broken)
    settings = _tiny(tmp_path, names=["multi_head", "toy_broken"])
    run_lra(settings, command="first")
    saved = json.loads((tmp_path / "lra" / "results.json").read_text())
    broken = [r for r in saved["runs"] if r["variant"] == "toy_broken"]
    assert broken and "not supported" in broken[0]["error"]
    assert "Failed runs" in (tmp_path / "lra" / "results.md").read_text()
    again = run_lra(settings, resume=True, command="second")  # keeps multi_head's run
    finished = [r for r in again["runs"] if r["variant"] == "multi_head"]
    assert len(finished) == 1 and finished[0] == saved["runs"][0]
    with pytest.raises(ValueError, match="other settings"):
        run_lra(_tiny(tmp_path, names=["multi_head"], seeds=2), resume=True)


def test_interrupted_study_keeps_the_finished_runs(tmp_path, monkeypatch):
    class Interrupting(ToyWindowed):
        def attend(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setitem(ATTENTION._entries, "toy_interrupting", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_lra(_tiny(tmp_path, names=["multi_head", "toy_interrupting"]), command="x")
    saved = json.loads((tmp_path / "lra" / "results.json").read_text())
    assert saved["interrupted"] is True
    assert [r["variant"] for r in saved["runs"]] == ["multi_head"]
    assert "Interrupted" in (tmp_path / "lra" / "results.md").read_text()


def test_markdown_notes_a_ranking_against_the_published_one():
    runs = [{"task": "listops", "variant": v, "seed": s, "accuracy": a + 0.001 * s,
             "params": 1, "train_seconds": 1.0}
            for v, a in (("multi_head", 0.2), ("linear", 0.5)) for s in range(3)]
    settings = asdict(LRASettings.quick(tasks=["listops"], names=["multi_head"]))
    settings["names"] = ["multi_head", "linear"]  # as if linear were registered
    results = {"command": "x", "machine": {}, "runs": runs, "wall_seconds": 1.0,
               "tasks": {"listops": {"chance": 0.15}}, "settings": settings}
    text = markdown(results)
    assert "linear (above here, below published)" in text
    assert "| linear | 50.1 ± 0.1 |" in text and "**(disagrees)**" in text
    assert "exact attention reaches 20.1% against 15.0% chance (+5.1 points): it learns it" in text


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="tasks"):
        LRASettings(tasks=["cifar"])
    with pytest.raises(ValueError, match="names"):
        LRASettings(names=["no_such_attention"])
    with pytest.raises(ValueError, match="seeds"):
        LRASettings(seeds=0)
    with pytest.raises(ValueError, match="task_model"):
        LRASettings(task_model={"retrieval": {"window": 8}})
    with pytest.raises(ValueError, match="task_model"):
        LRASettings(task_model={"cifar": {"n_heads": 2}})
    quick = LRASettings.quick().with_steps(10)
    assert {b.steps for b in quick.budgets.values()} == {10}
    assert quick.model_for("retrieval")["n_heads"] == 2 and quick.model_for("listops") == {
        "d_model": 32, "n_heads": 1, "n_layers": 1, "d_ff": 64, "dropout": 0.0}
    task = study.make_task("retrieval", quick)
    model = study.build_classifier("multi_head", task, quick)
    assert model.pooling == "first" and model.layers[0].self_attn.n_heads == 2
    # quick and full presets keep every pair beyond what a window of 64 carries to position 0
    for settings in (quick, LRASettings()):
        assert settings.retrieval_min_distance > 64 * settings.n_layers


def test_cli_runs_a_tiny_study(tmp_path, capsys, monkeypatch):
    original = study.LRASettings.quick

    def tiny_quick(**overrides):  # the CLI's own defaults, at test size
        return original(**{**overrides, "retrieval_length": 40, "retrieval_pairs": 3,
                           "retrieval_keys": 4, "retrieval_values": 3,
                           "retrieval_min_distance": 20, "retrieval_train": 32,
                           "retrieval_test": 16})

    monkeypatch.setattr(study.LRASettings, "quick", staticmethod(tiny_quick))
    out = tmp_path / "cli"
    code = main(["bench", "lra", "--quick", "--tasks", "retrieval", "--names", "multi_head",
                 "--seeds", "1", "--steps", "2", "--out", str(out)])
    assert code == 0
    assert "Test accuracy" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"][0]["steps"] == 2 and saved["settings"]["mode"] == "quick"
    assert main(["bench", "lra", "--names", "nope", "--out", str(out)]) != 0
