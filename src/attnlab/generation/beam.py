"""Batched beam search (Vaswani et al., 2017, sec. 6.1), for encoder-decoder and decoder-only
models alike (written against `generation.state`).

The paper decodes with beam size 4, length penalty alpha = 0.6 and a maximum output length of
input length + 50. The length penalty is GNMT's (Wu et al., 2016, eq. 14):
lp(Y) = ((5 + |Y|) / 6) ** alpha, and a hypothesis is ranked by log P(Y | X) / lp(Y), where |Y|
counts the EOS token.

The encoder runs once; its output and mask are repeated to B * beam rows (a decoder-only
model runs its prompt on B * beam rows). With the cache the decoder is fed one token per step:
self-attention keys/values are written into caches preallocated for the maximum output length,
the cross-attention keys/values are projected once (on the first step), and `cache.reorder`
makes every layer's self-attention cache follow the surviving beams (the cross-attention caches
need no reordering: a sentence's beams share its source). `use_cache=False` re-runs the decoder
over the whole prefix each step (the slow oracle).

Scores are log-probabilities of the processed logits (`generation.processors`: the repetition
penalty, when one is set), so greedy, sampling and beam search see the same distribution; |Y|
counts the generated tokens only (a decoder-only model's prompt is not part of it).

Each step takes the top 2 * beam continuations of every sentence (at most `beam` of them end in
EOS, so at least `beam` stay alive), ranked among each beam's own best 2 * beam tokens (the
others cannot be among them). An EOS continuation ranked within the top `beam` becomes a
finished hypothesis; the best `beam` non-EOS continuations stay alive. A sentence is done when
it has `beam` finished hypotheses and its best alive beam, scored at its current length, cannot
beat the worst of them; at its maximum length the alive beams are finished as they are. With
beam_size=1 this is exactly greedy decoding.

Hugging Face's beam search differs in three settings a Marian (OPUS-MT) folder's
generation_config.json carries, which `length_penalty_form="power"`, `force_eos_at_limit` and
`suppress_ids` reproduce: hypotheses are ranked by log P / |Y| ** alpha (alpha 1.0 by
default), EOS is forced at the last allowed step (its logit set to 0, every other to -inf:
ForcedEOSTokenLogitsProcessor), and the pad token is never generated (bad_words_ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation.processors import LogitsProcessor, logits_processor
from attnlab.generation.state import DecoderOnlyState, EncoderDecoderState

MAX_LEN_OFFSET = 50  # the paper's maximum output length: input length + 50


@dataclass
class BeamOutput:
    """The best hypothesis per input."""

    sequences: Tensor  # (B, L) generated ids, EOS included, padded with pad_token_id
    scores: Tensor  # (B,) log P(Y | X) / lp(Y), float32


LENGTH_PENALTY_FORMS = ("gnmt", "power")


def length_penalty_gnmt(length: int, alpha: float) -> float:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


def length_penalty_factor(length: int, alpha: float, form: str = "gnmt") -> float:
    """lp(Y) of `form`: "gnmt" ((5 + |Y|) / 6) ** alpha, or "power" |Y| ** alpha (Hugging
    Face's, |Y| counting EOS)."""
    return length_penalty_gnmt(length, alpha) if form == "gnmt" else float(length) ** alpha


def check_beam_arguments(beam_size: int, length_penalty: float,
                         max_new_tokens: int | None, length_penalty_form: str = "gnmt") -> None:
    """Raise a ConfigError naming the first beam search argument out of range."""
    if length_penalty_form not in LENGTH_PENALTY_FORMS:
        raise ConfigError(f"length_penalty_form must be one of {LENGTH_PENALTY_FORMS}, got "
                          f"{length_penalty_form!r}")
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size <= 0:
        raise ConfigError(f"beam_size must be a positive int, got {beam_size!r}")
    if not isinstance(length_penalty, int | float) or not 0.0 <= length_penalty < math.inf:
        raise ConfigError(f"length_penalty must be a finite number >= 0, got {length_penalty!r}")
    if max_new_tokens is not None and (
        isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int)
        or max_new_tokens <= 0
    ):
        raise ConfigError(f"max_new_tokens must be a positive int or None, got {max_new_tokens!r}")


@torch.no_grad()
def beam_search(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    max_new_tokens: int | None = None,
    use_cache: bool = True,
    processor: LogitsProcessor | None = None,
    eos_token_id: int | None = None,
    length_penalty_form: str = "gnmt",
    force_eos_at_limit: bool = False,
    suppress_ids: tuple[int, ...] = (),
) -> BeamOutput:
    """Return the best hypothesis per input row of an encoder-decoder under
    log P(Y | X) / lp(Y); sequences start after the start token.

    The maximum output length is `max_new_tokens` if given, else each row's real (unpadded)
    source length + 50; either way at most `config.max_seq_len - 1` (the start token takes a
    position). The model must offer `encode`, `decode`, `lm_head`, `new_cache` and a config
    with `decoder_start_token_id`, `eos_token_id`, `pad_token_id`, `max_seq_len`.
    `processor` is applied to the logits before the log_softmax; `eos_token_id` defaults to
    the config's. `length_penalty_form`, `force_eos_at_limit` and `suppress_ids` give Hugging
    Face's ranking, forced EOS and bad words (module docstring).
    """
    check_beam_arguments(beam_size, length_penalty, max_new_tokens, length_penalty_form)
    config = model.config
    B, S = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        source_len = torch.full((B,), S, device=device)  # (B,)
    else:
        source_len = attention_mask.bool().sum(-1)  # (B,)
    if max_new_tokens is None:
        max_len = source_len + MAX_LEN_OFFSET  # (B,)
    else:
        max_len = torch.full((B,), max_new_tokens, device=device)  # (B,)
    max_len = max_len.clamp(max=config.max_seq_len - 1)  # (B,)
    state = EncoderDecoderState(model, input_ids, attention_mask, beams=beam_size,
                                use_cache=use_cache, max_new_tokens=int(max_len.max()))
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    return search(state, max_len, beam_size=beam_size, length_penalty=length_penalty,
                  eos_id=eos, pad_id=config.pad_token_id, processor=processor,
                  length_penalty_form=length_penalty_form,
                  force_eos_at_limit=force_eos_at_limit, suppress_ids=suppress_ids)


def search(
    state: EncoderDecoderState | DecoderOnlyState,
    max_len: Tensor,
    *,
    beam_size: int,
    length_penalty: float,
    eos_id: int,
    pad_id: int,
    processor: LogitsProcessor | None = None,
    length_penalty_form: str = "gnmt",
    force_eos_at_limit: bool = False,
    suppress_ids: tuple[int, ...] = (),
) -> BeamOutput:
    """Beam search from a decoding state holding B * beam_size rows (each sentence's beams
    consecutive); `max_len` (B,) is each sentence's maximum number of new tokens. Returns the
    new tokens of the best hypothesis per sentence, padded with `pad_id`."""
    processor = processor or logits_processor()
    k, B = beam_size, max_len.size(0)
    device = max_len.device
    L = int(max_len.max())
    # Only beam 0 starts alive, so the first step does not pick k copies of one token.
    alive_logp = torch.full((B, k), -math.inf, device=device)  # (B, k)
    alive_logp[:, 0] = 0.0
    new_tokens = state.sequences.new_empty((B * k, 0))  # (B*k, t-1) tokens after the prefix
    fin_seqs = state.sequences.new_full((B, k, L), pad_id)  # (B, k, L)
    fin_scores = torch.full((B, k), -math.inf, device=device)  # (B, k), sorted best first
    fin_lens = torch.zeros((B, k), dtype=torch.long, device=device)  # (B, k)
    done = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
    rank = torch.arange(2 * k, device=device)  # (2k,)
    rows = torch.arange(B, device=device)[:, None] * k  # (B, 1) first flat row of each sentence

    for t in range(1, L + 1):  # t: hypothesis length once this step's token is appended
        logits = processor(state.next_logits(), state.sequences)  # (B*k, V)
        if suppress_ids:
            never = torch.tensor(suppress_ids, device=logits.device)  # (n,)
            logits = logits.index_fill(1, never, -math.inf)  # (B*k, V)
        if force_eos_at_limit and bool((max_len == t).any()):
            last = (max_len == t).repeat_interleave(k)  # (B*k,) rows at their last step
            forced = torch.full_like(logits[0], -math.inf)  # (V,)
            forced[eos_id] = 0.0
            logits = torch.where(last[:, None], forced, logits)  # (B*k, V)
        logp = F.log_softmax(logits, dim=-1)  # (B*k, V)
        # A sentence's best 2k continuations are among each beam's best 2k tokens (a beam adds
        # the same log P to all of its tokens), so only those are added and ranked.
        W = min(2 * k, logp.size(-1))
        row_logp, row_token = logp.topk(W, dim=1)  # (B*k, W) each
        candidates = (alive_logp.view(B * k, 1) + row_logp).view(B, k * W)  # (B, k*W)
        top_logp, top_index = candidates.topk(2 * k, dim=1)  # (B, 2k) each, best first
        beam = top_index // W  # (B, 2k)
        token = row_token.view(B, k * W).gather(1, top_index)  # (B, 2k)
        is_eos = token == eos_id  # (B, 2k)

        # Finish EOS continuations ranked within the top k; at a row's maximum length, finish
        # every candidate (those without EOS are truncated hypotheses).
        at_limit = (max_len == t)[:, None]  # (B, 1)
        finish = ((is_eos & (rank < k)) | at_limit) & top_logp.isfinite() & ~done[:, None]
        if bool(finish.any()):
            prefix = new_tokens.view(B, k, t - 1)  # (B, k, t-1)
            prefix = prefix.gather(1, beam[..., None].expand(-1, -1, t - 1))  # (B, 2k, t-1)
            new_seqs = torch.cat([prefix, token[..., None]], dim=2)  # (B, 2k, t)
            new_seqs = F.pad(new_seqs, (0, L - t), value=pad_id)  # (B, 2k, L)
            new_scores = top_logp / length_penalty_factor(t, length_penalty, length_penalty_form)
            new_scores = new_scores.masked_fill(~finish, -math.inf)  # (B, 2k)
            all_scores = torch.cat([fin_scores, new_scores], dim=1)  # (B, 3k)
            fin_scores, keep = all_scores.topk(k, dim=1)  # (B, k)
            all_seqs = torch.cat([fin_seqs, new_seqs], dim=1)  # (B, 3k, L)
            fin_seqs = all_seqs.gather(1, keep[..., None].expand(-1, -1, L))  # (B, k, L)
            all_lens = torch.cat([fin_lens, torch.full_like(new_scores, t, dtype=torch.long)], 1)
            fin_lens = all_lens.gather(1, keep)  # (B, k)

        # The best k continuations without EOS stay alive (rank order, EOS ones sorted last).
        alive = (is_eos.long() * 2 * k + rank).topk(k, dim=1, largest=False).indices  # (B, k)
        alive_logp = top_logp.gather(1, alive)  # (B, k)
        index = (rows + beam.gather(1, alive)).view(B * k)  # (B*k,) flat rows to follow
        next_ids = token.gather(1, alive).view(B * k)  # (B*k,)
        new_tokens = torch.cat([new_tokens[index], next_ids[:, None]], dim=1)  # (B*k, t)
        state.reorder(index)
        state.append(next_ids)

        # Done: k finished hypotheses the best alive beam cannot beat (scored at its current
        # length, as in Hugging Face's default stopping rule), or the maximum length reached.
        best_alive = alive_logp.max(dim=1).values / length_penalty_factor(
            t, length_penalty, length_penalty_form)  # (B,)
        worst_finished = fin_scores[:, -1]  # (B,) finite only when k hypotheses are finished
        done |= worst_finished.isfinite() & (best_alive <= worst_finished)
        done |= max_len <= t
        alive_logp = alive_logp.masked_fill(done[:, None], -math.inf)  # (B, k)
        if bool(done.all()):
            break

    width = int(fin_lens[:, 0].max())
    return BeamOutput(sequences=fin_seqs[:, 0, :width], scores=fin_scores[:, 0])
