"""studies/compare/decoding.py: per-token latency and decoding memory against the context, for
a KV-cached Transformer (llama-tiny) and every recurrent preset registered (mamba-tiny,
rwkv-tiny, retnet-tiny, lstm-lm-tiny; skipped with a reason while none is), and the crossover
on hand-made rows."""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.models import build_model, list_models
from attnlab.nn.mixers import SequenceMixer
from attnlab.studies.compare.decoding import (
    KEYS,
    crossover,
    measure_decoding,
    prefill,
    use_fastest_form,
)

torch.set_num_threads(1)

RECURRENT = [p for p in ("mamba-tiny", "rwkv-tiny", "retnet-tiny", "lstm-lm-tiny")
             if p in list_models()]


def rows_of(preset: str, contexts=(8, 32), **kwargs):
    torch.manual_seed(0)
    model = build_model(preset)
    return measure_decoding(model, list(contexts), new_tokens=3, prefill_chunk=16, **kwargs)


def test_rows_have_the_keys_and_the_kv_cache_grows_with_the_context():
    short, long = rows_of("llama-tiny")
    for row in (short, long):
        assert set(KEYS) <= set(row), row
        assert row["ms_per_token"] > 0 and row["prefill_seconds"] > 0
        assert row["peak_bytes"] >= row["cache_bytes"] > 0
        assert len(row["step_ms"]) == 3
    assert (short["context"], long["context"]) == (8, 32)
    # llama-tiny: 2 layers x keys and values x 2 kv heads x 16 dims x 4 bytes per position
    per_position = 2 * 2 * 2 * 16 * 4
    assert short["cache_bytes"] == 8 * per_position and long["cache_bytes"] == 32 * per_position


@pytest.mark.skipif(not RECURRENT, reason="no recurrent preset registered yet (mamba-tiny, "
                                          "rwkv-tiny, retnet-tiny, lstm-lm-tiny)")
@pytest.mark.parametrize("preset", RECURRENT)
def test_a_recurrent_models_state_does_not_grow_with_the_context(preset):
    short, long = rows_of(preset)
    assert set(KEYS) <= set(short)
    assert short["cache_bytes"] == long["cache_bytes"] > 0
    assert long["peak_bytes"] >= long["cache_bytes"]


@pytest.mark.parametrize("preset", ["llama-tiny", *RECURRENT])
def test_chunked_prefill_gives_the_logits_of_one_prefill(preset):
    """Each chunk attends to (or continues the state of) everything before it."""
    torch.manual_seed(0)
    model = build_model(preset).double().eval()
    ids = torch.randint(4, 1000, (2, 40))
    with torch.no_grad():
        whole = prefill(model, ids, model.new_cache(), 64)
        chunked = prefill(model, ids, model.new_cache(), 7)
    torch.testing.assert_close(chunked, whole, atol=1e-8, rtol=1e-8)


@pytest.mark.skipif(not RECURRENT, reason="no recurrent preset registered yet")
def test_the_fastest_form_is_set_on_every_mixer_and_a_transformer_has_none():
    assert use_fastest_form(build_model("llama-tiny"), tokens=8) is None
    model = build_model(RECURRENT[0])
    mixers = [m for m in model.modules() if isinstance(m, SequenceMixer)]
    form = use_fastest_form(model, tokens=16)
    if len(mixers[0].forms) > 1:
        assert form in mixers[0].forms and {m.form for m in mixers} == {form}


def test_a_transformer_too_short_for_the_context_is_named():
    model = build_model("llama-tiny", max_seq_len=40)
    with pytest.raises(ConfigError, match="max_seq_len >= 51.*max_seq_len=40"):
        measure_decoding(model, [32], new_tokens=16)
    with pytest.raises(ConfigError, match="new_tokens"):
        measure_decoding(model, [8], new_tokens=0)
    with pytest.raises(ConfigError, match="contexts"):
        measure_decoding(model, [])


def test_progress_is_called_per_context_and_training_mode_is_restored():
    model = build_model("llama-tiny").train()
    seen = []
    measure_decoding(model, [4, 6], new_tokens=1, progress=seen.append)
    assert seen == ["context 4", "context 6"] and model.training


def test_crossover_is_the_first_context_where_b_is_faster():
    a = [{"context": n, "ms_per_token": ms} for n, ms in ((1024, 2.0), (2048, 3.0),
                                                         (4096, 5.0), (8192, 9.0))]
    b = [{"context": n, "ms_per_token": ms} for n, ms in ((8192, 4.0), (1024, 4.0),
                                                         (2048, 4.0), (4096, 4.0))]
    assert crossover(a, b) == 4096  # 4.0 < 5.0; at 2048 4.0 > 3.0
    assert crossover(b, a) == 1024
    assert crossover(a, [{"context": 1024, "ms_per_token": 2.0}]) is None  # equal is not below
    assert crossover(a, [{"context": 512, "ms_per_token": 0.1}]) is None  # not measured by a
