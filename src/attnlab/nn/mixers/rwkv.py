"""RWKV-4's time mix and channel mix (Peng et al. 2023, "RWKV: Reinventing RNNs for the
Transformer Era", sec. 3), with the parameter names and shapes of transformers'
RwkvForCausalLM.

Time mix (the sequence mixer, registered "rwkv"). With the token shift x'_t = x_{t-1} (zeros
before the first token), k_t = W_k (mu_k x_t + (1 - mu_k) x'_t), v_t and r_t alike, and per
channel a decay w = exp(time_decay) > 0 and a bonus u = time_first for the current token:

    wkv_t = (sum_{i<t} e^{k_i - (t-1-i) w} v_i + e^{u + k_t} v_t)
          / (sum_{i<t} e^{k_i - (t-1-i) w}     + e^{u + k_t})
    out_t = W_o (sigmoid(r_t) * wkv_t)

Forms (equal to float64 rounding):
- "recurrent": the state (num, den, max) of the paper's numerically stable step (the sums
  above scaled by e^-max, max the largest log-weight seen), one position at a time;
- "parallel": all positions at once, in chunks of `chunk_size`: inside a chunk the (L x L)
  matrix of log-weights k_i - gap * w with each row's maximum subtracted before the
  exponential, every chunk at once; each chunk's summary (num, den, max) carried to the next
  by a loop over the chunks (T / L steps of (B, A) tensors). Nothing is exponentiated above its
  row's maximum, so long sequences and keys of +-60 stay finite. The work inside chunks grows
  with L and the loop with T / L. On one CPU thread (d=256, batch 8, forward + backward) the
  default L = 4 is the fastest chunk, and the recurrent loop is as fast or faster (T=256:
  112 vs 102 ms; T=1024: 528 vs 414 ms); the parallel form's few hundred operations, against
  the loop's tens per position, are for accelerators, where each operation is a launch.
The WKV runs in float32 at least (float64 stays float64), as transformers runs it.

Padded positions (mask False) are skipped: their keys get no weight, they do not decay the
state, and the token shift of the next real token reads the last real input before it (zeros
at the start), so a padded row equals the same row without its padding.

Channel mix (`RwkvChannelMix`, a feed-forward, not a mixer): with the same token shift,
out_t = sigmoid(W_r x^r_t) * W_v relu(W_k x^k_t)^2. Its last real input lives in the layer's
RecurrentState under its own name ("channel_mix_x"); it does not advance the state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.nn.attention.base import AttentionOutput
from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers.base import MIXER, SequenceMixer, positive_int

NEG = -1e38  # the log-scale of an empty state (transformers' initial max), finite on purpose

WkvState = tuple[Tensor, Tensor, Tensor]  # num, den, max: each (B, A)


def _layer_position(owner: str, layer_id: object, n_layers: object) -> tuple[int, int]:
    """(layer_id, n_layers) once checked: the init schedules run over the depth."""
    positive_int(owner, "n_layers", n_layers)
    if isinstance(layer_id, bool) or not isinstance(layer_id, int) \
            or not 0 <= layer_id < n_layers:
        raise ConfigError(f"{owner}: layer_id must be an integer in [0, n_layers={n_layers}), "
                          f"got {layer_id!r}")
    return layer_id, n_layers


def token_shift(x: Tensor, keep: Tensor | None, last: Tensor) -> tuple[Tensor, Tensor]:
    """x (B, T, D), keep (B, T) bool or None, last (B, D) the input before x -> (each position's
    previous real input (B, T, D), the last real input after x (B, D))."""
    if keep is None:
        return torch.cat([last[:, None], x[:, :-1]], 1), x[:, -1]
    positions = torch.arange(x.size(1), device=x.device).expand_as(keep)  # (B, T)
    latest = torch.where(keep, positions, -1).cummax(1).values  # (B, T) last real index <= t
    before = torch.cat([latest.new_full((x.size(0), 1), -1), latest[:, :-1]], 1)  # (B, T) < t

    def pick(index: Tensor) -> Tensor:  # (B, T') indices, -1 = none yet -> (B, T', D)
        got = x.gather(1, index.clamp_min(0)[..., None].expand(-1, -1, x.size(-1)))
        return torch.where(index[..., None] >= 0, got, last[:, None])

    return pick(before), pick(latest[:, -1:])[:, 0]


def mix(x: Tensor, shifted: Tensor, mu: Tensor) -> Tensor:
    """mu x + (1 - mu) x' (the token shift's interpolation, per channel)."""
    return x * mu + shifted * (1 - mu)


def empty_state(batch: int, size: int, like: Tensor) -> WkvState:
    zeros = like.new_zeros(batch, size)
    return zeros, zeros.clone(), torch.full_like(zeros, NEG)


def wkv_recurrent(w: Tensor, u: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
                  state: WkvState) -> tuple[Tensor, WkvState]:
    """One position at a time. w (A,) decay > 0, u (A,) bonus, k, v (B, T, A), keep (B, T) or
    None, state (num, den, max) -> wkv (B, T, A), the state after the last position."""
    num, den, top = state
    outs = []
    reals = [None] * k.size(1) if keep is None else keep[..., None].unbind(1)  # (B, 1) each
    # unbound once: indexing k[:, t] in the loop makes each step's backward a full-size gradient
    for kt, vt, real in zip(k.unbind(1), v.unbind(1), reals, strict=True):  # (B, A) each
        now = torch.maximum(top, kt + u).detach()  # any reference cancels: keep it constant
        a, b = torch.exp(top - now), torch.exp(kt + u - now)
        outs.append((a * num + b * vt) / (a * den + b))
        after = torch.maximum(top - w, kt).detach()
        a, b = torch.exp(top - w - after), torch.exp(kt - after)
        new = (a * num + b * vt, a * den + b, after)
        if real is not None:  # a padded position leaves the state as it was
            new = tuple(torch.where(real, n, o) for n, o in zip(new, (num, den, top), strict=True))
        num, den, top = new
    return torch.stack(outs, 1), (num, den, top)


def wkv_parallel(w: Tensor, u: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
                 state: WkvState, chunk_size: int) -> tuple[Tensor, WkvState]:
    """All positions at once, chunk by chunk (see the module docstring); same arguments and
    results as `wkv_recurrent`."""
    B, T, A = k.shape
    L = min(chunk_size, T)
    n = -(-T // L)
    pad = n * L - T  # padded at the end: skipped positions change nothing
    if pad:
        k, v = (nn.functional.pad(t, (0, 0, 0, pad)) for t in (k, v))
        if keep is None:
            keep = torch.ones(B, T, dtype=torch.bool, device=k.device)
        keep = nn.functional.pad(keep, (0, pad), value=False)
    kc, vc = k.view(B, n, L, A), v.view(B, n, L, A)  # (B, n, L, A): chunk, position, channel
    ti = torch.arange(L, device=k.device)
    if keep is None:  # every position real: the same gaps in every chunk
        real = None
        count = (ti + 1).to(k.dtype).expand(B, n, L)  # real positions up to t, inclusive
        before = count - 1  # (B, n, L) real positions before t
    else:
        real = keep.view(B, n, L)
        count = real.to(k.dtype).cumsum(-1)
        before = count - real.to(k.dtype)

    # inside a chunk, key i < t at position t: log-weight k_i - (real positions between) w;
    # gw holds (real positions between) w, +inf where i is not an earlier real position
    lower = ti[:, None] > ti[None, :]  # (L_t, L_i)
    if real is None:
        gap = (ti[:, None] - ti[None, :] - 1).to(k.dtype)  # (L_t, L_i)
        gw = torch.where(lower[..., None], gap[..., None] * w, math.inf)  # (L_t, L_i, A)
    else:
        gap = before[..., :, None] - count[..., None, :]  # (B, n, L_t, L_i)
        allowed = (lower & real[..., None, :])[..., None]  # (B, n, L_t, L_i, 1)
        gw = torch.where(allowed, gap[..., None] * w, math.inf)  # (B, n, L_t, L_i, A)
    # each row's largest log-weight, from a running max of k_i + count_i w (no (L x L) max)
    lifted = kc + count[..., None] * w  # (B, n, L, A)
    if real is not None:
        lifted = lifted.masked_fill(~real[..., None], -math.inf)
    running = lifted.cummax(2).values
    earlier = torch.cat([torch.full_like(running[:, :, :1], -math.inf), running[:, :, :-1]], 2)
    top_in = (earlier - before[..., None] * w).clamp_min(NEG).detach()  # (B, n, L, A)
    e = torch.exp(kc[:, :, None] - top_in[:, :, :, None] - gw)  # (B, n, L_t, L_i, A)
    num_in, den_in = (e * vc[:, :, None]).sum(3), e.sum(3)  # (B, n, L, A)

    # each chunk's summary: its keys' log-weights at the position after the chunk
    total = count[..., -1:]  # (B, n, 1) real positions in the chunk
    end = kc - (total - count)[..., None] * w  # (B, n, L, A)
    if real is not None:
        end = end.masked_fill(~real[..., None], -math.inf)
    top_c = end.amax(2).clamp_min(NEG).detach()  # (B, n, A)
    ee = torch.exp(end - top_c[:, :, None])  # (B, n, L, A)
    num_c, den_c = (ee * vc).sum(2), ee.sum(2)  # (B, n, A)

    # the state entering each chunk: a loop over the chunks, (B, A) per step
    num, den, top = state
    starts = []
    for total_c, top_c_, num_c_, den_c_ in zip(total.unbind(1), top_c.unbind(1),
                                               num_c.unbind(1), den_c.unbind(1), strict=True):
        starts.append((num, den, top))
        decayed = top - total_c * w  # (B, A)
        after = torch.maximum(decayed, top_c_).detach()
        a, b = torch.exp(decayed - after), torch.exp(top_c_ - after)
        num, den, top = a * num + b * num_c_, a * den + b * den_c_, after
    # (B, n, 1, A) each: the state entering every chunk; decayed by the real positions before t
    num_s, den_s, top_s = (torch.stack(s, 1)[:, :, None] for s in zip(*starts, strict=True))
    top_s = top_s - before[..., None] * w  # (B, n, L, A)

    # position t: the earlier keys of its chunk, its own key (bonus u), the entering state
    own = kc + u  # (B, n, L, A)
    ref = torch.maximum(torch.maximum(top_in, own), top_s).detach()
    a, b, c = torch.exp(top_in - ref), torch.exp(own - ref), torch.exp(top_s - ref)
    out = (a * num_in + b * vc + c * num_s) / (a * den_in + b + c * den_s)  # (B, n, L, A)
    return out.reshape(B, n * L, A)[:, :T], (num, den, top)


@MIXER.register("rwkv")
class RwkvTimeMix(SequenceMixer):
    """RWKV-4's time mix: token shift, key / value / receptance, WKV, sigmoid gate, output.

    Args:
        d_model: model width D.
        attention_hidden_size: width A of keys, values and the WKV state (default D).
        form: "parallel" (default; training) or "recurrent" (one position at a time).
        chunk_size: positions per chunk of the parallel form.
        layer_id, n_layers: where the layer sits, for the paper's depth-dependent init of the
            decays and token-shift mixes.
    """

    forms = ("parallel", "recurrent")

    def __init__(self, d_model: int, attention_hidden_size: int | None = None, *,
                 form: str | None = None, chunk_size: int = 4, layer_id: int = 0,
                 n_layers: int = 1) -> None:
        super().__init__(d_model, form)
        name = type(self).__name__
        A = d_model if attention_hidden_size is None else attention_hidden_size
        self.attention_hidden_size = positive_int(name, "attention_hidden_size", A)
        self.chunk_size = positive_int(name, "chunk_size", chunk_size)
        self.layer_id, self.n_layers = _layer_position(name, layer_id, n_layers)
        self.time_decay = nn.Parameter(torch.empty(A))  # w = exp(time_decay)
        self.time_first = nn.Parameter(torch.empty(A))  # u
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_value = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, A, bias=False)
        self.value = nn.Linear(d_model, A, bias=False)
        self.receptance = nn.Linear(d_model, A, bias=False)
        self.output = nn.Linear(A, d_model, bias=False)
        self.reset_time_parameters()

    @torch.no_grad()
    def reset_time_parameters(self) -> None:
        """The paper's (and RWKV-LM's) init: decays from -5 to 3 across channels, steeper in
        deeper layers; u = log(0.3) plus a +-0.5 zigzag; shift mixes from x' to x by depth."""
        A, D = self.attention_hidden_size, self.d_model
        depth = self.layer_id / max(self.n_layers - 1, 1)  # 0 .. 1
        shallow = 1.0 - self.layer_id / self.n_layers  # 1 .. ~0
        h = torch.arange(A, dtype=torch.float64) / max(A - 1, 1)
        self.time_decay.copy_(-5 + 8 * h ** (0.7 + 1.3 * depth))
        zigzag = 0.5 * (((torch.arange(A) + 1) % 3) - 1).double()
        self.time_first.copy_(math.log(0.3) + zigzag)
        ramp = (torch.arange(D, dtype=torch.float64) / D).view(1, 1, D)
        self.time_mix_key.copy_(ramp ** shallow)
        self.time_mix_value.copy_(ramp ** shallow + 0.3 * depth)
        self.time_mix_receptance.copy_(ramp ** (0.5 * shallow))

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                causal: bool = True, cache: RecurrentState | None = None,
                need_weights: bool = False, bias: Tensor | None = None,
                position_ids: Tensor | None = None) -> AttentionOutput:
        """x (B, T, D) -> AttentionOutput((B, T, D), None, cache)."""
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)
        B, T, _ = x.shape
        last = None if cache is None else cache.get("time_mix_x")
        shifted, last = token_shift(x, keep, x.new_zeros(B, self.d_model) if last is None
                                    else last)
        k = self.key(mix(x, shifted, self.time_mix_key))  # (B, T, A)
        v = self.value(mix(x, shifted, self.time_mix_value))  # (B, T, A)
        r = torch.sigmoid(self.receptance(mix(x, shifted, self.time_mix_receptance)))
        dtype = torch.promote_types(k.dtype, torch.float32)
        k, v = k.to(dtype), v.to(dtype)
        w, u = torch.exp(self.time_decay.to(dtype)), self.time_first.to(dtype)
        state = None if cache is None else cache.get("wkv_num")
        if state is None:
            state = empty_state(B, self.attention_hidden_size, k)
        else:
            state = (state, cache.get("wkv_den"), cache.get("wkv_max"))
        if self.form == "recurrent" or T == 1:
            wkv, state = wkv_recurrent(w, u, k, v, keep, state)
        else:
            wkv, state = wkv_parallel(w, u, k, v, keep, state, self.chunk_size)
        y = self.output(r * wkv.to(r.dtype))  # (B, T, D)
        if cache is not None:
            cache.set("time_mix_x", last)
            for name, value in zip(("wkv_num", "wkv_den", "wkv_max"), state, strict=True):
                cache.set(name, value)
            cache.advance(T)
        return self.result(y, cache)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, attention_hidden_size={self.attention_hidden_size}, "
                f"form={self.form!r}, chunk_size={self.chunk_size}")


class RwkvChannelMix(nn.Module):
    """RWKV-4's channel mix: token shift, sigmoid(receptance) * value(relu(key)^2).

    forward(x (B, T, D), keep (B, T) bool or None, cache RecurrentState or None) -> (B, T, D).
    """

    def __init__(self, d_model: int, d_ff: int | None = None, *, layer_id: int = 0,
                 n_layers: int = 1) -> None:
        super().__init__()
        name = type(self).__name__
        self.d_model = positive_int(name, "d_model", d_model)
        F = positive_int(name, "d_ff", 4 * d_model if d_ff is None else d_ff)
        self.layer_id, self.n_layers = _layer_position(name, layer_id, n_layers)
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, F, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(F, d_model, bias=False)
        self.reset_time_parameters()

    @torch.no_grad()
    def reset_time_parameters(self) -> None:
        """Shift mixes from x' to x by depth, as the paper's init."""
        shallow = 1.0 - self.layer_id / self.n_layers
        ramp = (torch.arange(self.d_model, dtype=torch.float64) / self.d_model)
        self.time_mix_key.copy_(ramp.view(1, 1, -1) ** shallow)
        self.time_mix_receptance.copy_(ramp.view(1, 1, -1) ** shallow)

    def forward(self, x: Tensor, keep: Tensor | None = None,
                cache: RecurrentState | None = None) -> Tensor:
        last = None if cache is None else cache.get("channel_mix_x")
        shifted, last = token_shift(x, keep, x.new_zeros(x.size(0), self.d_model)
                                    if last is None else last)
        k = torch.relu(self.key(mix(x, shifted, self.time_mix_key))) ** 2  # (B, T, F)
        r = torch.sigmoid(self.receptance(mix(x, shifted, self.time_mix_receptance)))
        if cache is not None:
            cache.set("channel_mix_x", last)
        return r * self.value(k)  # (B, T, D)
