"""Shipped recipes (`--config`), settings precedence, device and precision resolution."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.cli.main import build_parser
from attnlab.cli.train import settings_from_args
from attnlab.models import list_models
from attnlab.tasks.translation import (
    load_recipe,
    recipe_names,
    resolve_device,
    settings_from_dict,
)
from attnlab.training.trainer import resolve_precision


def parse(*argv):
    return build_parser().parse_args(["train", "translate", *argv])


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_is_valid(name):
    settings = settings_from_dict(load_recipe(name), name)
    assert settings.preset in list_models()


def test_recipes_ship_the_paper_and_the_demo():
    assert {"demo", "wmt14-en-de-base", "wmt14-en-de-big"} <= set(recipe_names())


def test_wmt14_base_is_the_papers_recipe():
    s = settings_from_dict(load_recipe("wmt14-en-de-base"), "base")
    assert s.preset == "transformer-base" and s.warmup_steps == 4000
    assert s.vocab_size == 37000 and s.label_smoothing == 0.1
    assert s.max_tokens * s.grad_accum == 25_000  # ~25k source and target tokens per step
    assert s.average_last == 5 and s.keep_last >= 5
    assert (s.beam_size, s.length_penalty) == (4, 0.6)
    big = settings_from_dict(load_recipe("wmt14-en-de-big"), "big")
    assert big.preset == "transformer-big" and big.average_last == 20 and big.max_steps == 300_000


def test_flags_override_the_recipe_and_the_recipe_overrides_defaults():
    s = settings_from_args(parse("--config", "wmt14-en-de-base", "--warmup-steps", "10",
                                 "--set", "dropout=0.2"))
    assert s.warmup_steps == 10  # flag
    assert s.vocab_size == 37000  # recipe
    assert s.seed == 1  # default
    assert s.model_overrides == {"max_seq_len": 1024, "dropout": 0.2}  # merged
    plain = settings_from_args(parse())
    assert plain.vocab_size is None and plain.warmup_steps == 4000  # None: from the corpus
    assert plain.preset == "auto" and plain.schedule == "budget" and plain.keep == "best"


def test_config_file_with_unknown_field_names_it(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"_note": "comments start with _", "warmup": 10}))
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['warmup'\]"):
        load_recipe(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_recipe(str(path))


def test_missing_recipe_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="wmt14-en-de-base"):
        load_recipe("wmt15")


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp8")


@pytest.mark.parametrize("field, value, message", [
    ("eval_every", -1, "eval_every must be a non-negative integer, got -1"),
    ("max_tokens", 0, "max_tokens must be a positive integer, got 0"),
    ("label_smoothing", 1.0, r"label_smoothing must be in \[0, 1\), got 1.0"),
    ("precision", "fp8", r"precision must be one of \[.auto., .fp32., .bf16., .fp16.\]"),
    ("average_last", 9, "average_last=9 needs keep_last >= it"),
    ("preset", "gpt2", "preset must be auto or an encoder-decoder model"),
])
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        settings_from_dict({field: value}, "test")
