"""The folder owner (attnlab.io): one loader and saver for every family and both layouts, one
strict weight check, one tokenizer type, generation settings; what transformers loads with a
warning loads here with a warning."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import attnlab
from attnlab.errors import FolderError, MissingFileError, UserError
from attnlab.io import (
    load_folder,
    load_generation_config,
    load_tokenizer,
    read_config,
    save_folder,
)
from attnlab.models import build_model, list_models
from attnlab.models.auto import model_classes
from attnlab.serialization import load_state_strict
from attnlab.tokenizers import Tokenizer

transformers = pytest.importorskip("transformers")

TINY = [name for name in list_models() if name.endswith("-tiny")]


@pytest.mark.parametrize("name", TINY)
def test_every_family_round_trips_with_tokenizer_and_generation_settings(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name)
    tokenizer = Tokenizer.train_bpe(["one two three four"] * 3, vocab_size=300)
    save_folder(model, tmp_path, tokenizer=tokenizer, generation={"num_beams": 3})
    back = load_folder(tmp_path, model_classes())
    assert type(back) is type(model) and back.config == model.config and not back.training
    for key, value in back.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0, msg=key)
    assert load_tokenizer(tmp_path).encode("one two") == tokenizer.encode("one two")
    assert load_generation_config(tmp_path) == {"num_beams": 3}


def test_a_gpt2_folder_with_bos_outside_the_vocabulary_loads_with_a_warning(tmp_path, caplog):
    # transformers' default GPT2Config keeps bos/eos 50256 whatever the vocabulary size
    config = transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=1,
                                     n_head=2)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path) is not None  # the oracle
    with caplog.at_level(logging.WARNING):
        ours = attnlab.from_pretrained(tmp_path)
    assert "bos_token_id=50256 is outside the vocabulary of 100 tokens" in caplog.text
    assert ours.config.bos_token_id is None and ours.config.eos_token_id is None
    ids = torch.randint(0, 100, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_an_old_folder_with_label_smoothing_in_its_config_loads(tmp_path):
    model = build_model("transformer-tiny")
    save_folder(model, tmp_path)
    values = read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**values, "label_smoothing": 0.1}))
    assert attnlab.from_pretrained(tmp_path).config == model.config


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(MissingFileError, match="is not a folder"):
        attnlab.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match="config.json not found"):
        attnlab.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FolderError, match="invalid JSON"):
        attnlab.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(FolderError, match="expected a JSON config, got list"):
        attnlab.from_pretrained(tmp_path)
    save_folder(build_model("transformer-tiny"), tmp_path)
    values = read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**values, "n_experts": 8}))
    with pytest.raises(FolderError, match=r"unknown transformer config field\(s\) \['n_experts'\]"):
        attnlab.from_pretrained(tmp_path)
    with pytest.raises(MissingFileError, match="tokenizer.json not found"):
        load_tokenizer(tmp_path)
    assert load_tokenizer(tmp_path, required=False) is None
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(FolderError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "generation_config.json").write_text('{"num_beams": "four"}')
    with pytest.raises(FolderError, match="num_beams must be int, got 'four'"):
        load_generation_config(tmp_path)
    assert issubclass(FolderError, UserError) and issubclass(FolderError, ValueError)


def test_the_weight_check_names_missing_unexpected_and_mis_shaped(tmp_path):
    model = build_model("gpt2-tiny")
    save_folder(model, tmp_path, layout="attnlab")
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("decoder.final_norm.bias")
    state["decoder.extra"] = torch.zeros(1)
    state["position.embedding.weight"] = torch.zeros(3, 64)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(FolderError) as error:
        attnlab.from_pretrained(tmp_path)
    message = str(error.value)
    assert "missing=['decoder.final_norm.bias']" in message
    assert "unexpected=['decoder.extra']" in message
    # the mis-shaped tensor is explained by the config field it comes from (issue 16)
    assert "config.json: max_seq_len=128 does not match the weights (position.embedding.weight " \
        "is (3, 64) in" in message
    assert "the config implies (128, 64))" in message


def test_optional_prefixes_and_ignored_extras():
    model = build_model("bert-tiny", num_labels=2)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    with pytest.raises(FolderError, match="missing=.*classifier"):
        load_state_strict(model, state, "here")
    load_state_strict(model, state, "here", optional=("classifier.",))
    load_state_strict(model, {**state, "old_head.weight": torch.zeros(1)}, "here",
                      optional=("classifier.",), ignore_unexpected=True)


def test_one_tokenizer_type_reads_the_tokenizers_people_bring(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "hello": 5}
    wordpiece = HFTokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    wordpiece.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    bert = Tokenizer(wordpiece)
    assert (bert.pad_id, bert.unk_id, bert.special_id("cls"), bert.special_id("sep"),
            bert.special_id("mask")) == (0, 1, 2, 3, 4)
    gpt2 = Tokenizer(HFTokenizer(models.BPE({"<|endoftext|>": 0, "a": 1}, [])))
    gpt2.backend.add_special_tokens(["<|endoftext|>"])
    assert (gpt2.bos_id, gpt2.eos_id, gpt2.pad_id) == (0, 0, None)
    with pytest.raises(FolderError, match="pad id must be 0, got None"):
        gpt2.require_specials({"pad": 0}, "here")
    plain = Tokenizer(HFTokenizer(models.BPE({"a": 0}, [])))
    with pytest.raises(UserError, match="add_eos=True needs an end-of-sequence token"):
        plain.encode("a", add_eos=True)
