"""multi_head against trusted implementations with copied weights.

- torch.nn.MultiheadAttention (batch_first=True): self and cross attention, bool and float
  attn_mask (2-D and 3-D), key_padding_mask, causal; eval and train (dropout 0).
  Torch's bool masks mean True = NOT allowed; ours mean True = may attend.
- grouped-query / multi-query: n_kv_heads < n_heads equals full multi-head attention whose
  key/value projections repeat each group (query head h uses kv head h // (H / Hkv)).
- Hugging Face LlamaAttention (eager): GQA, no projection biases, with identity rotary
  embeddings (cos = 1, sin = 0) and with real RoPE through our "rope" position module.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION, KERNELS
from attnlab.nn.cache import KVCache

torch.set_num_threads(1)

KERNEL_NAMES = KERNELS.names()
TOL = dict(atol=1e-5, rtol=1e-5)
B, T, S, D, H = 2, 5, 7, 16, 4


def build_pair(kernel, *, bias=True, seed=0):
    """A torch MultiheadAttention and our multi_head holding the same weights."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(D, H, dropout=0.0, bias=bias, batch_first=True)
    if bias:  # torch zero-initialises the biases; make them matter
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    ours = ATTENTION.build("multi_head", d_model=D, n_heads=H, bias=bias, kernel=kernel)
    wq, wk, wv = theirs.in_proj_weight.detach().chunk(3, dim=0)
    with torch.no_grad():
        ours.q_proj.weight.copy_(wq)
        ours.k_proj.weight.copy_(wk)
        ours.v_proj.weight.copy_(wv)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        if bias:
            bq, bk, bv = theirs.in_proj_bias.detach().chunk(3, dim=0)
            ours.q_proj.bias.copy_(bq)
            ours.k_proj.bias.copy_(bk)
            ours.v_proj.bias.copy_(bv)
            ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return theirs, ours


def some_allowed(shape, seed):
    """A random bool 'may attend' mask in which every row keeps at least one key (torch MHA
    returns NaN for empty rows, so those are tested elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.rand(shape, generator=g) < 0.6
    allowed[..., 0] = True
    return allowed


MASK_CASES = ["none", "bool_2d", "bool_3d", "float_2d", "key_padding", "key_padding_and_bool",
              "causal"]


def mask_arguments(case, T, S, seed=1):
    """(torch MHA kwargs, our kwargs) expressing the same masking."""
    if case == "none":
        return {}, {}
    if case == "bool_2d":
        allowed = some_allowed((T, S), seed)
        return {"attn_mask": ~allowed}, {"mask": allowed}
    if case == "bool_3d":
        allowed = some_allowed((B, H, T, S), seed)
        return {"attn_mask": ~allowed.reshape(B * H, T, S)}, {"mask": allowed}
    if case == "float_2d":
        additive = torch.randn(T, S, generator=torch.Generator().manual_seed(seed))
        return {"attn_mask": additive}, {"bias": additive}
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[0, S - 2:] = False
    keep[1, S - 1:] = False
    if case == "key_padding":
        return {"key_padding_mask": ~keep}, {"mask": AF.padding_mask(keep)}
    if case == "key_padding_and_bool":
        allowed = some_allowed((T, S), seed)
        return (
            {"key_padding_mask": ~keep, "attn_mask": ~allowed},
            {"mask": AF.padding_mask(keep) & allowed},
        )
    if case == "causal":
        # Lower-right: query t stands at key position t + S - T (True = not allowed, torch).
        future = torch.ones(T, S, dtype=torch.bool).triu(1 + S - T)
        hint = {"is_causal": True} if T == S else {}
        return {"attn_mask": future, **hint}, {"causal": True}
    raise AssertionError(case)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g), torch.randn(B, S, D, generator=g)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_matches_torch_multihead_attention(cross, case, kernel, training):
    theirs, ours = build_pair(kernel)
    theirs.train(training)
    ours.train(training)
    x, context = inputs()
    source = context if cross else x
    their_kw, our_kw = mask_arguments(case, T, source.size(1))

    want, want_w = theirs(x, source, source, need_weights=True, average_attn_weights=True,
                          **their_kw)
    got = ours(x, context if cross else None, need_weights=True, **our_kw)
    torch.testing.assert_close(got.output, want, **TOL)
    torch.testing.assert_close(got.weights.mean(dim=1), want_w, **TOL)
    # Per-head weights too, and the no-weights (fused) path gives the same output.
    _, per_head = theirs(x, source, source, need_weights=True, average_attn_weights=False,
                         **their_kw)
    torch.testing.assert_close(got.weights, per_head, **TOL)
    fast = ours(x, context if cross else None, **our_kw).output
    torch.testing.assert_close(fast, want, **TOL)
    if not training:
        # torch's eval path without weights may take its native fast path: still equal.
        want_fast, _ = theirs(x, source, source, need_weights=False, **their_kw)
        torch.testing.assert_close(fast, want_fast, **TOL)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_matches_torch_without_projection_biases(kernel):
    theirs, ours = build_pair(kernel, bias=False, seed=3)
    theirs.eval()
    ours.eval()
    x, context = inputs(seed=4)
    want, _ = theirs(x, context, context)
    torch.testing.assert_close(ours(x, context).output, want, **TOL)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_gradients_match_torch_multihead_attention(kernel):
    theirs, ours = build_pair(kernel, seed=5)
    x, context = inputs(seed=6)
    their_kw, our_kw = mask_arguments("key_padding_and_bool", T, S)
    upstream = torch.randn(B, T, D, generator=torch.Generator().manual_seed(7))
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    (theirs(x1, context, context, **their_kw)[0] * upstream).sum().backward()
    (ours(x2, context, **our_kw).output * upstream).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **TOL)
    wq, wk, wv = theirs.in_proj_weight.grad.chunk(3, dim=0)
    torch.testing.assert_close(ours.q_proj.weight.grad, wq, **TOL)
    torch.testing.assert_close(ours.k_proj.weight.grad, wk, **TOL)
    torch.testing.assert_close(ours.v_proj.weight.grad, wv, **TOL)
    torch.testing.assert_close(ours.out_proj.weight.grad, theirs.out_proj.weight.grad, **TOL)
    torch.testing.assert_close(ours.out_proj.bias.grad, theirs.out_proj.bias.grad, **TOL)


def test_kernels_agree_inside_the_module():
    torch.manual_seed(0)
    ref = ATTENTION.build("multi_head", d_model=D, n_heads=H, n_kv_heads=2, kernel="reference")
    fast = ATTENTION.build("multi_head", d_model=D, n_heads=H, n_kv_heads=2, kernel="sdpa")
    fast.load_state_dict(ref.state_dict())
    x, context = inputs(seed=8)
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[1, -2:] = False
    mask = AF.padding_mask(keep)
    for kw in (dict(), dict(causal=True), dict(mask=mask, causal=True)):
        torch.testing.assert_close(fast(x, **kw).output, ref(x, **kw).output, **TOL)
    torch.testing.assert_close(fast(x, context).output, ref(x, context).output, **TOL)


# --------------------------------------------------------------------------------------------
# Grouped-query and multi-query attention
# --------------------------------------------------------------------------------------------


def expand_groups(weight, n_kv_heads, n_heads, head_dim):
    """(Hkv * Dh, ...) projection rows -> (H * Dh, ...): kv head j serves query heads
    j * G .. j * G + G - 1, so each block of Dh rows is repeated G times in place."""
    groups = n_heads // n_kv_heads
    blocks = weight.reshape(n_kv_heads, head_dim, *weight.shape[1:])
    return blocks.repeat_interleave(groups, dim=0).reshape(n_heads * head_dim, *weight.shape[1:])


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("n_kv_heads", [1, 2], ids=["mqa", "gqa"])
def test_grouped_query_equals_repeated_kv_projection(kernel, n_kv_heads):
    n_heads = 4
    head_dim = D // n_heads
    torch.manual_seed(9)
    grouped = ATTENTION.build("multi_head", d_model=D, n_heads=n_heads, n_kv_heads=n_kv_heads,
                              kernel=kernel).eval()
    full = ATTENTION.build("multi_head", d_model=D, n_heads=n_heads, kernel=kernel).eval()
    assert grouped.k_proj.weight.shape == (n_kv_heads * head_dim, D)
    state = {}
    for key, value in grouped.state_dict().items():
        if key.startswith(("k_proj", "v_proj")):
            value = expand_groups(value, n_kv_heads, n_heads, head_dim)
        state[key] = value
    full.load_state_dict(state)

    x, context = inputs(seed=10)
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[0, -1] = False
    for kw in (dict(), dict(causal=True), dict(mask=AF.padding_mask(keep), causal=True)):
        a = grouped(x, need_weights=True, **kw)
        b = full(x, need_weights=True, **kw)
        torch.testing.assert_close(a.output, b.output, **TOL)
        torch.testing.assert_close(a.weights, b.weights, **TOL)
        torch.testing.assert_close(grouped(x, **kw).output, b.output, **TOL)
    torch.testing.assert_close(grouped(x, context).output, full(x, context).output, **TOL)

    # Decoding: the grouped cache holds only Hkv heads and gives the same outputs.
    cache = KVCache()
    steps = [grouped(x[:, t: t + 1], causal=True, cache=cache).output for t in range(T)]
    assert cache.key.shape == (B, n_kv_heads, T, head_dim)
    torch.testing.assert_close(torch.cat(steps, 1), full(x, causal=True).output, **TOL)


def test_expand_groups_layout():
    # Two kv heads of width 1, four query heads: rows [a, b] -> [a, a, b, b].
    w = torch.tensor([[1.0], [2.0]])
    assert expand_groups(w, 2, 4, 1).flatten().tolist() == [1.0, 1.0, 2.0, 2.0]


# --------------------------------------------------------------------------------------------
# Hugging Face LlamaAttention
# --------------------------------------------------------------------------------------------


def llama_pair(kernel, rotary):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    from attnlab.nn.position import POSITION

    config = LlamaConfig(hidden_size=D, num_attention_heads=H, num_key_value_heads=2,
                         intermediate_size=32, vocab_size=32, max_position_embeddings=32,
                         attention_bias=False, rope_theta=10000.0)
    config._attn_implementation = "eager"
    torch.manual_seed(11)
    theirs = LlamaAttention(config, layer_idx=0).eval()
    rope = POSITION.build("rope", d_model=D, n_heads=H, max_seq_len=32) if rotary else None
    ours = ATTENTION.build("multi_head", d_model=D, n_heads=H, n_kv_heads=2, bias=False,
                           kernel=kernel, rotary=rope).eval()
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            getattr(ours, name).weight.copy_(getattr(theirs, name).weight)
        ours.out_proj.weight.copy_(theirs.o_proj.weight)
    return config, theirs, ours


def hf_additive_mask(allowed):
    """Our bool (B, 1, T, S) mask -> the additive float mask HF eager attention adds."""
    zeros = torch.zeros(allowed.shape)
    return zeros.masked_fill(~allowed, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("rotary", [False, True], ids=["identity_rotary", "rope"])
def test_matches_hugging_face_llama_attention(kernel, rotary):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config, theirs, ours = llama_pair(kernel, rotary)
    x, _ = inputs(seed=12)
    # Left padding, as in batched decoder-only generation; the first query of example 1 is
    # padding and is never compared (HF gives it uniform weights, we give it zeros).
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[1, :1] = False
    allowed = AF.padding_mask(keep) & AF.causal_mask(T, T)  # (B, 1, T, T)
    position_ids = torch.arange(T).expand(B, T)
    if rotary:
        cos, sin = LlamaRotaryEmbedding(config)(x, position_ids)
    else:
        cos, sin = torch.ones(B, T, D // H), torch.zeros(B, T, D // H)

    want, want_w = theirs(x, position_embeddings=(cos, sin),
                          attention_mask=hf_additive_mask(allowed))
    got = ours(x, mask=AF.padding_mask(keep), causal=True, need_weights=True,
               position_ids=position_ids)
    real = keep  # queries that are real tokens
    torch.testing.assert_close(got.output[real], want[real], **TOL)
    torch.testing.assert_close(got.weights.transpose(1, 2)[real],
                               want_w.transpose(1, 2)[real], **TOL)
    fast = ours(x, mask=AF.padding_mask(keep), causal=True, position_ids=position_ids).output
    torch.testing.assert_close(fast[real], want[real], **TOL)


@pytest.mark.parametrize("kernel", ["reference", "sdpa"])
def test_score_scale_knob_matches_manual_attention(kernel):
    """scale=1.0 (T5) leaves q k^T unscaled; both kernels honour it."""
    from attnlab.nn.attention.multi_head import MultiHeadAttention

    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, bias=False, kernel=kernel, scale=1.0).eval()
    x = torch.randn(2, 5, 16)
    q, k, v = (attn.split_heads(proj(x), 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # no 1/sqrt(Dh)
    expected = attn.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(x).output, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        MultiHeadAttention(16, 2, scale=0.0)
