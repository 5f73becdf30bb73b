"""The llama.cpp comparison runs end to end on a tiny model (timings are never asserted): the
synthetic tokenizer has exactly the vocabulary asked for, every side is recorded with its
ratio and roofline fraction, and the llama.cpp sides appear only where llama-cpp-python is
installed (CI does not build it)."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gguf")


def test_synthetic_tokenizer_has_the_vocabulary_asked_for(load_benchmark):
    bench = load_benchmark("vs_llamacpp")
    tokenizer = bench.synthetic_byte_level(700)
    assert tokenizer.vocab_size == 700 and tokenizer.is_byte_level
    assert tokenizer.special_id("eos") == 0
    text = "the quick brown fox"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_quick_run_records_every_side(load_benchmark, tmp_path):
    bench = load_benchmark("vs_llamacpp")
    out = tmp_path / "l.json"
    bench.main(["--quick", "--repeats", "1", "--new-tokens", "4", "--no-compile",
                "--out", str(out)])
    result = json.loads(out.read_text())
    sides = {r["side"] for r in result["records"] if "side" in r}
    expected = {"attnlab Q4_1 file (int4)", "attnlab fp32", "attnlab bf16", "attnlab int8",
                "transformers fp32"}
    if importlib.util.find_spec("llama_cpp") is not None:
        expected |= {"llama.cpp Q4_1", "llama.cpp F32"}
    assert sides == expected
    by_side = {r["side"]: r for r in result["records"] if "side" in r}
    assert by_side["attnlab fp32"]["tokens_same_as_attnlab_fp32"] == 1.0
    # a 4-bit step reads far fewer bytes than an fp32 one
    assert (by_side["attnlab Q4_1 file (int4)"]["bytes_per_step_mb"]
            < by_side["attnlab fp32"]["bytes_per_step_mb"] / 2)
    for record in by_side.values():
        assert record["tokens_per_s"] > 0 and record["fraction_of_roofline"] > 0
    assert "--quick" in result["command"]
