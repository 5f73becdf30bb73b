"""KV caches: the preallocated cache (in-place writes into max_length positions) gives the same
attention outputs as the growing one, step by step, with GQA, after beam-search reordering,
and refuses to go past its capacity."""

from __future__ import annotations

import pytest
import torch

from attnlab.nn.attention import ATTENTION
from attnlab.nn.cache import DecoderCache, KVCache

B, T, D, H = 3, 7, 32, 4
EXACT = dict(atol=1e-6, rtol=0)


def attention(n_kv_heads: int = H, kernel: str = "sdpa"):
    torch.manual_seed(0)
    return ATTENTION.build("multi_head", d_model=D, n_heads=H, n_kv_heads=n_kv_heads,
                           kernel=kernel).eval()


def decode(attn, x, cache, prefill=1):
    """Prefill `prefill` positions, then one token per step; outputs (B, T, D)."""
    steps = [attn(x[:, :prefill], causal=True, cache=cache).output]
    for t in range(prefill, x.size(1)):
        steps.append(attn(x[:, t: t + 1], causal=True, cache=cache).output)
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("kernel", ["sdpa", "reference"])
@pytest.mark.parametrize("n_kv_heads", [H, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("prefill", [1, 3])
def test_preallocated_equals_growing_step_by_step(kernel, n_kv_heads, prefill):
    attn = attention(n_kv_heads, kernel)
    x = torch.randn(B, T, D)
    growing, preallocated = KVCache(), KVCache(max_length=T + 5)
    with torch.no_grad():
        expected = decode(attn, x, growing, prefill)
        got = decode(attn, x, preallocated, prefill)
        full = attn(x, causal=True).output
    torch.testing.assert_close(got, expected, **EXACT)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    assert preallocated.length == growing.length == T and preallocated.is_filled
    assert preallocated.key.shape == growing.key.shape == (B, n_kv_heads, T, D // H)
    torch.testing.assert_close(preallocated.key, growing.key, rtol=0, atol=0)
    torch.testing.assert_close(preallocated.value, growing.value, rtol=0, atol=0)


def test_buffer_is_allocated_once_with_the_keys_dtype_and_written_in_place():
    cache = KVCache(max_length=6)
    assert not cache.is_filled and cache.length == 0 and cache.key is None
    k = torch.randn(2, 2, 1, 4, dtype=torch.float64)
    key, value = cache.update(k, k + 1)
    buffer = key.untyped_storage().data_ptr()
    assert key.dtype == torch.float64 and key.shape == (2, 2, 1, 4)
    for length in range(2, 7):
        key, value = cache.update(torch.randn(2, 2, 1, 4, dtype=torch.float64),
                                  torch.randn(2, 2, 1, 4, dtype=torch.float64))
        assert key.shape == value.shape == (2, 2, length, 4) and cache.length == length
        assert key.untyped_storage().data_ptr() == buffer  # a view, no new allocation
    torch.testing.assert_close(key[:, :, :1], k)


def test_overflow_names_capacity_and_requested_length():
    cache = KVCache(max_length=4)
    cache.update(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8))
    with pytest.raises(ValueError, match=r"max_length=4, requested length 6"):
        cache.update(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8))
    assert cache.length == 3  # a refused update changes nothing
    with pytest.raises(ValueError, match=r"max_length=2, requested length 3"):
        KVCache(max_length=2).update(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8))


def test_mismatched_keys_are_refused():
    cache = KVCache(max_length=8)
    cache.update(torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8))
    with pytest.raises(ValueError, match="do not match the cache"):
        cache.update(torch.randn(3, 2, 1, 8), torch.randn(3, 2, 1, 8))


@pytest.mark.parametrize("max_length, error, message", [
    (0, ValueError, "max_length must be positive, got 0"),
    (-3, ValueError, "max_length must be positive, got -3"),
    (2.5, TypeError, "max_length must be an int or None, got 2.5"),
    (True, TypeError, "max_length must be an int or None, got True"),
])
def test_invalid_max_length(max_length, error, message):
    with pytest.raises(error, match=message):
        KVCache(max_length=max_length)


def test_cross_attention_cache_is_not_preallocated():
    with pytest.raises(ValueError, match="cross=True with max_length=5"):
        KVCache(cross=True, max_length=5)
    cache = DecoderCache.empty(2, max_length=5)
    assert [layer.self_attn.max_length for layer in cache.layers] == [5, 5]
    assert all(layer.cross_attn.cross and layer.cross_attn.max_length is None
               for layer in cache.layers)
    assert DecoderCache.empty(2).layers[0].self_attn.max_length is None


@pytest.mark.parametrize("index", [[2, 2, 0], [1, 0], [0, 1, 2, 2, 1]],
                         ids=["beam", "fewer_rows", "more_rows"])
def test_reorder_matches_growing_and_full_recompute(index):
    attn = attention(n_kv_heads=2)
    x = torch.randn(B, T, D)
    index = torch.tensor(index)
    growing, preallocated = KVCache(), KVCache(max_length=T)
    with torch.no_grad():
        for cache in (growing, preallocated):
            decode(attn, x[:, :4], cache)
        before = preallocated.key
        for cache in (growing, preallocated):
            cache.reorder(index)
        got = decode(attn, x[index, 4:], preallocated, prefill=1)
        expected = decode(attn, x[index, 4:], growing, prefill=1)
        full = attn(x[index], causal=True).output[:, 4:]
    torch.testing.assert_close(got, expected, **EXACT)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    assert preallocated.length == T and preallocated.key.shape[0] == len(index)
    assert before.shape[0] == B  # views handed out earlier are left alone


def test_reorder_of_an_empty_cache_is_a_no_op():
    cache = KVCache(max_length=3)
    cache.reorder(torch.tensor([0, 0]))
    assert not cache.is_filled and cache.length == 0


def test_reorder_writes_into_a_second_buffer_and_allocates_nothing_after():
    """Repeated beam reorders of a preallocated cache alternate between two buffers (made on the
    first reorder) and keep the growing cache's keys and values, repeated rows included."""
    growing, preallocated = KVCache(), KVCache(max_length=T)
    g = torch.Generator().manual_seed(0)
    buffers = set()
    for step in range(T):
        k, v = torch.randn(B, 2, 1, 8, generator=g), torch.randn(B, 2, 1, 8, generator=g)
        for cache in (growing, preallocated):
            cache.update(k, v)
        index = torch.randint(0, B, (B,), generator=g)
        for cache in (growing, preallocated):
            cache.reorder(index)
        buffers.add(preallocated.key.untyped_storage().data_ptr())
        assert torch.equal(preallocated.key, growing.key)
        assert torch.equal(preallocated.value, growing.value)
        assert preallocated.length == growing.length == step + 1
    assert len(buffers) == 2


def test_decoder_cache_reorder_can_leave_cross_attention_caches_alone():
    cache = DecoderCache.empty(2, max_length=4)
    for layer in cache.layers:
        layer.self_attn.update(torch.randn(3, 2, 1, 8), torch.randn(3, 2, 1, 8))
        layer.cross_attn.update(torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8))
    cross = [layer.cross_attn.key for layer in cache.layers]
    index = torch.tensor([2, 2, 0])
    selves = [layer.self_attn.key[index] for layer in cache.layers]
    cache.reorder(index, cross=False)
    for layer, key, self_key in zip(cache.layers, cross, selves, strict=True):
        assert layer.cross_attn.key is key
        assert torch.equal(layer.self_attn.key, self_key)
    cache.reorder(index)  # the default follows the rows in both
    for layer, key in zip(cache.layers, cross, strict=True):
        assert torch.equal(layer.cross_attn.key, key[index])
