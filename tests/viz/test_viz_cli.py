"""`attnlab viz` end to end on tiny model folders: the files it writes and the errors it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer

torch.set_num_threads(1)

LINES = ["the apple was juicy and red", "apple stock crashed on monday",
         "the farmer sells red apples", "stock prices fell again today"] * 4
TEXT = "the apple was juicy"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models with tokenizers trained here, saved as `attnlab train` leaves them."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    folders = {}
    for preset in ("gpt2-tiny", "transformer-tiny", "convs2s-tiny"):
        folders[preset] = build_model(preset).save_pretrained(root / preset)
        if preset == "gpt2-tiny":
            tokenizer = Tokenizer.train_byte_level(LINES, 300, ["<eos>"])
            tokenizer.save(root / preset / "tokenizer.json")
        else:
            Tokenizer.train_bpe(LINES, vocab_size=300, min_frequency=1).save(root / preset)
    return folders


def viz(*args: str | Path) -> int:
    return main(["viz", *map(str, args)])


def test_decoder_only_writes_grid_rollout_heads_maps(folders, tmp_path, capsys):
    out = tmp_path / "viz"
    assert viz("--model", folders["gpt2-tiny"], "--text", TEXT, "--out", out, "--no-html") == 0
    assert (out / "causal-self-attention_grid.png").is_file()
    assert (out / "causal-self-attention-rollout.png").is_file()
    heads = sorted(p.name for p in (out / "heads").iterdir())
    assert heads == [f"causal-self-attention_L{layer}H{head}.png"
                     for layer in (1, 2) for head in (1, 2, 3, 4)]
    assert not (out / "index.html").exists()
    maps = json.loads((out / "maps.json").read_text())
    assert maps["family"] == "gpt2" and [v["name"] for v in maps["views"]] == [
        "causal self-attention"]
    weights = torch.tensor(maps["views"][0]["weights"])  # (L, H, T, T)
    assert weights.shape == (2, 4, len(maps["views"][0]["query_tokens"]),
                             len(maps["views"][0]["key_tokens"]))
    assert torch.triu(weights, diagonal=1).abs().max() == 0  # causal: no future keys
    printed = capsys.readouterr().out
    assert "causal self-attention: 2 layers x 4 heads" in printed
    assert f"wrote {out / 'maps.json'}" in printed


def test_translation_model_writes_every_view_alignment_and_viewer(folders, tmp_path):
    out = tmp_path / "viz"
    assert viz("--model", folders["transformer-tiny"], "--text", TEXT, "--target",
               "apple stock crashed", "--out", out, "--layers", "2", "--heads", "1", "3") == 0
    for name in ("encoder-self-attention", "decoder-self-attention", "cross-attention"):
        assert (out / f"{name}_grid.png").is_file()
        assert {p.name for p in (out / "heads").glob(f"{name}_L*")} == {
            f"{name}_L2H1.png", f"{name}_L2H3.png"}
    assert (out / "cross-attention_alignment.png").is_file()
    assert (out / "encoder-self-attention-rollout.png").is_file()
    maps = json.loads((out / "maps.json").read_text())
    cross = next(v for v in maps["views"] if v["name"] == "cross-attention")
    assert cross["kind"] == "cross" and cross["query_tokens"][-1] == "</s>"
    page = (out / "index.html").read_text()
    assert "cross-attention" in page and "rollout" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time


def test_one_head_views_take_the_layers_they_have(folders, tmp_path):
    out = tmp_path / "viz"
    assert viz("--model", folders["convs2s-tiny"], "--text", TEXT, "--target",
               "apple stock crashed on monday", "--out", out, "--layers", "2", "--no-html") == 0
    assert sorted(p.name for p in (out / "heads").iterdir()) == ["cross-attention_L2H1.png"]
    assert (out / "cross-attention_alignment.png").is_file()


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda f, t: ["--model", t / "nowhere"], "is not a folder"),
    (lambda f, t: ["--model", f["gpt2-tiny"].parent], "config.json"),
    (lambda f, t: ["--model", f["gpt2-tiny"], "--target", "apple"],
     "--target is for encoder-decoder models"),
    (lambda f, t: ["--model", f["gpt2-tiny"], "--layers", "9"], "--layers: layers [9]"),
    (lambda f, t: ["--model", f["transformer-tiny"], "--heads", "5"], "this view has 4 heads"),
])
def test_errors_name_the_problem(folders, tmp_path, capsys, make_args, message):
    args = [*make_args(folders, tmp_path), "--text", TEXT, "--out", tmp_path / "out"]
    assert viz(*args) == 2
    assert message in capsys.readouterr().err


def test_folder_without_tokenizer_is_named(tmp_path, capsys):
    build_model("gpt2-tiny").save_pretrained(tmp_path / "m")
    assert viz("--model", tmp_path / "m", "--text", TEXT, "--out", tmp_path / "out") == 2
    assert "tokenizer.json not found" in capsys.readouterr().err


def test_heads_and_viz_call_the_same_head_by_the_same_name(folders, tmp_path, capsys):
    """Layers and heads are numbered from 1 in both commands (issue 16): the head `attnlab
    heads` reports as L2H3 is the one `attnlab viz --layers 2 --heads 3` draws in
    `..._L2H3.png`, and scores.json's row 1, column 2."""
    folder = folders["gpt2-tiny"]
    assert main(["heads", "--model", str(folder), "--out", str(tmp_path / "heads"),
                 "--length", "8", "--batch", "1", "--top", "8"]) == 0
    report = capsys.readouterr().out
    scores = json.loads((tmp_path / "heads" / "scores.json").read_text())
    first_token = scores["views"]["self-attention"]["first_token"]  # (layers, heads)
    row = next(line for line in report.splitlines() if line.strip().startswith("first-token"))
    named = dict(item.split() for item in row.split(None, 1)[1].split(", "))  # name -> score
    assert sorted(named) == [f"L{layer}H{head}" for layer in (1, 2) for head in (1, 2, 3, 4)]
    for name, score in named.items():
        layer, head = map(int, name[1:].split("H"))
        assert f"{first_token[layer - 1][head - 1]:.2f}" == score
    table = [line.split() for line in report.splitlines() if line.startswith("      ")]
    assert {(int(r[0]), int(r[1])) for r in table if len(r) > 2} == {
        (layer, head) for layer in (1, 2) for head in (1, 2, 3, 4)}
    assert viz("--model", folder, "--text", TEXT, "--out", tmp_path / "viz", "--layers", "2",
               "--heads", "3", "--no-html") == 0
    drawn = [p.name for p in (tmp_path / "viz" / "heads").iterdir()]
    assert drawn == ["causal-self-attention_L2H3.png"] and "L2H3" in named
