"""The MarianMTModel beam-search comparison runs end to end on a tiny model (timings are never
asserted): both sides hold the same weights, decode every step and give the same tokens."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")


def test_pair_holds_the_same_weights(load_benchmark):
    bench = load_benchmark("vs_marian")
    ours, hf = bench.build_pair(bench.QUICK)
    ids, mask = bench.sources(3, bench.QUICK["vocab_size"])
    assert all(20 <= n <= 30 for n in mask.sum(1).tolist())
    assert (ids.gather(1, mask.sum(1, keepdim=True) - 1) == bench.EOS).all()  # each ends in EOS
    decoder = torch.full((3, 4), bench.QUICK["vocab_size"] - 1)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits
        got = ours(ids, decoder, attention_mask=mask).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert float(got[..., bench.EOS].max()) < -1e3  # EOS never wins: every step is decoded


def test_quick_run_records_ratios_and_identical_tokens(load_benchmark, tmp_path):
    bench = load_benchmark("vs_marian")
    out = tmp_path / "vs_marian.json"
    assert bench.main(["--quick", "--repeats", "1", "--batch-sizes", "1", "3",
                       "--new-tokens", "6", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["batch"] for r in result["records"]] == [1, 3]
    for record in result["records"]:
        assert record["same_tokens"] is True
        assert record["new_tokens"] == {"attnlab": 6, "transformers": 6}
        assert record["ratio"] > 0 and record["matmul_floor_seconds"] > 0
        assert record["attnlab_sentences_per_s"] > 0 and record["transformers_sentences_per_s"] > 0
    assert len(result["records"][1]["source_tokens"]) == 3
    assert result["threads"] == torch.get_num_threads() and result["transformers"]
    assert result["machine"]["cpu"] and "--quick" in result["command"]
