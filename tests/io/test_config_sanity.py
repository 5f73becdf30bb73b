"""Config sanity at load (issue 16): a config.json whose sizes are absurd (vocab_size: 10**12)
or do not fit the weights on disk is a FolderError naming the field, raised before any model
is allocated, in from_pretrained and in every command that opens a folder; the folder is left
as it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

import attnlab
from attnlab.cli.main import main
from attnlab.errors import FolderError
from attnlab.io.limits import SIZE_LIMITS, check_sizes
from attnlab.models import PRESETS, build_model, get_config, list_models
from attnlab.tokenizers import Tokenizer

HUGE = 10**12


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def edit_config(folder: Path, **values) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@pytest.fixture
def no_real_build(monkeypatch):
    """Once armed, fail the test if an embedding is built off the meta device: the checks must
    come before any real build."""
    original = torch.nn.Embedding.__init__

    def init(self, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            raise AssertionError("a model was built before the config was checked")
        original(self, *args, **kwargs)

    return lambda: monkeypatch.setattr(torch.nn.Embedding, "__init__", init)


@pytest.mark.parametrize("layout", ["attnlab", "hf"])
@pytest.mark.parametrize("field, hf_field", [("vocab_size", "vocab_size"),
                                             ("d_model", "n_embd"), ("n_layers", "n_layer"),
                                             ("max_seq_len", "n_positions")])
def test_an_absurd_size_is_refused_before_anything_is_built(tmp_path, no_real_build, layout,
                                                            field, hf_field):
    build_model("gpt2-tiny").save_pretrained(tmp_path, layout=layout)
    edit_config(tmp_path, **{field if layout == "attnlab" else hf_field: HUGE})
    before = snapshot(tmp_path)
    no_real_build()
    with pytest.raises(FolderError) as error:
        attnlab.from_pretrained(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'config.json'}: {field}={HUGE} is outside "
                                       f"the sane range [1, {SIZE_LIMITS[field]:,}]")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("layout", ["attnlab", "hf"])
def test_a_vocab_size_that_does_not_fit_the_weights_names_field_and_tensor(tmp_path,
                                                                           no_real_build, layout):
    build_model("gpt2-tiny").save_pretrained(tmp_path, layout=layout)
    edit_config(tmp_path, vocab_size=2000)
    before = snapshot(tmp_path)
    no_real_build()
    with pytest.raises(FolderError) as error:
        attnlab.from_pretrained(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'config.json'}: vocab_size=2000 does not match the weights "
        f"(embed_tokens.weight is (1000, 64) in {tmp_path / 'model.safetensors'}, the config "
        "implies (2000, 64))")
    assert snapshot(tmp_path) == before


def test_a_hugging_face_width_that_does_not_fit_names_the_files_key(tmp_path, no_real_build):
    build_model("llama-tiny").save_pretrained(tmp_path, layout="hf")
    edit_config(tmp_path, hidden_size=96, intermediate_size=172)
    no_real_build()
    with pytest.raises(FolderError, match=r"config.json: d_model=96 \(the file's hidden_size\) "
                                          r"does not match the weights \(decoder\.final_norm"
                                          r"\.weight is \(64,\) in .*the config implies \(96,\)\)"
                                          r"; also mis-shaped=\["):
        attnlab.from_pretrained(tmp_path)


def test_more_layers_in_the_config_than_in_the_file_are_named_as_missing(tmp_path,
                                                                         no_real_build):
    build_model("transformer-tiny").save_pretrained(tmp_path)
    edit_config(tmp_path, n_layers=3, n_decoder_layers=3)
    no_real_build()
    with pytest.raises(FolderError, match=r"config.json: the config does not fit the weights in "
                                          r".*model.safetensors: missing=\['decoder.layers.2."):
        attnlab.from_pretrained(tmp_path)


def test_a_pytorch_model_bin_is_checked_the_same_way(tmp_path, no_real_build):
    model = build_model("gpt2-tiny")
    model.save_pretrained(tmp_path, layout="hf")
    state = __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(tmp_path / "model.safetensors"))
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    edit_config(tmp_path, vocab_size=1500)
    no_real_build()
    with pytest.raises(FolderError, match=r"vocab_size=1500 does not match the weights "
                                          r"\(embed_tokens.weight is \(1000, 64\) in .*"
                                          r"pytorch_model.bin"):
        attnlab.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith("-tiny")])
def test_every_family_config_refuses_an_absurd_size(name):
    fields = {f.name for f in dataclasses.fields(PRESETS[name].model_class.config_class)}
    if "vocab_size" in fields:  # image and audio families read pixels and filterbanks
        with pytest.raises(ValueError, match=rf"vocab_size={HUGE} is outside the sane range"):
            get_config(name, vocab_size=HUGE)
    # ResNet: stages, not layers; CLIP: two towers; VQ-VAE: residual blocks
    depth = next(f for f in ("n_layers", "text_n_layers", "width", "res_blocks") if f in fields)
    with pytest.raises(ValueError, match=rf"{depth}=100000 is outside the sane range"):
        get_config(name, **{depth: 100_000})


def test_every_tiny_folder_still_loads_with_the_check(tmp_path):
    for name in [n for n in list_models() if n.endswith("-tiny")]:
        torch.manual_seed(0)
        model = build_model(name).eval()
        model.save_pretrained(tmp_path / name)
        loaded = attnlab.from_pretrained(tmp_path / name)
        for (key, a), b in zip(model.state_dict().items(), loaded.state_dict().values(),
                               strict=True):
            torch.testing.assert_close(a, b, msg=f"{name}: {key}")


def test_the_bounds_admit_every_preset_and_the_largest_real_models():
    for preset in PRESETS.values():
        check_sizes(preset.values)
    # LLaMA-2-70B, GPT-2 XL, T5-11B (their config.json values), LLaMA-3.1-405B, Gemma's vocab
    check_sizes(dict(vocab_size=32000, d_model=8192, n_heads=64, n_kv_heads=8, n_layers=80,
                     d_ff=28672, max_seq_len=4096))
    check_sizes(dict(vocab_size=50257, d_model=1600, n_heads=25, n_layers=48, d_ff=6400,
                     max_seq_len=1024))
    check_sizes(dict(vocab_size=32128, d_model=1024, n_heads=128, head_dim=128, n_layers=24,
                     d_ff=65536))
    check_sizes(dict(vocab_size=256000, d_model=16384, n_layers=126, d_ff=53248,
                     max_seq_len=131072))


@pytest.mark.parametrize("command", [["generate", "--prompt", "the dog"], ["translate", "a b"],
                                     ["viz", "--text", "a b", "--out", "VIZ"]])
def test_every_command_reports_the_field_in_one_line(tmp_path, capsys, command):
    folder = tmp_path / "model"
    build_model("gpt2-tiny").save_pretrained(folder)
    Tokenizer.train_chars(["the dog a b"]).save(folder / "tokenizer.json")
    edit_config(folder, vocab_size=HUGE)
    before = snapshot(folder)
    args = [str(tmp_path / "viz") if a == "VIZ" else a for a in command[1:]]
    assert main([command[0], "--model", str(folder), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert f"vocab_size={HUGE} is outside the sane range" in captured.err
    assert snapshot(folder) == before
    assert not (tmp_path / "viz").exists()
