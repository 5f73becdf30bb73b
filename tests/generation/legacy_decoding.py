"""The decoding loops as they were before `model.generate` was unified (attnlab at bdc9a4a),
frozen here as oracles: the new code must give the same tokens. Argument checks left out."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.generation.beam import BeamOutput, length_penalty_gnmt


@torch.no_grad()
def old_greedy_decode(model, input_ids, attention_mask=None, *, max_new_tokens=64):
    config = model.config
    memory = model.encode(input_ids, attention_mask).last_hidden_state
    B = input_ids.size(0)
    prefix = input_ids.new_full((B, 1), config.decoder_start_token_id)
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    cache = model.new_cache()
    for _ in range(max_new_tokens):
        hidden = model.decode(prefix[:, -1:], memory, attention_mask=attention_mask, cache=cache)
        logits = model.lm_head(hidden.last_hidden_state[:, -1])
        next_ids = logits.argmax(-1).masked_fill(finished, config.pad_token_id)
        prefix = torch.cat([prefix, next_ids[:, None]], dim=1)
        finished |= next_ids == config.eos_token_id
        if bool(finished.all()):
            break
    return prefix[:, 1:]


@torch.no_grad()
def old_beam_search(model, input_ids, attention_mask=None, *, beam_size=4, length_penalty=0.6,
                    max_new_tokens=None) -> BeamOutput:
    config, k = model.config, beam_size
    B, S = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        source_len = torch.full((B,), S, device=device)
    else:
        source_len = attention_mask.bool().sum(-1)
    if max_new_tokens is None:
        max_len = source_len + 50
    else:
        max_len = torch.full((B,), max_new_tokens, device=device)
    max_len = max_len.clamp(max=config.max_seq_len - 1)
    L = int(max_len.max())
    memory = model.encode(input_ids, attention_mask).last_hidden_state.repeat_interleave(k, 0)
    if attention_mask is not None:
        attention_mask = attention_mask.repeat_interleave(k, dim=0)
    cache = model.new_cache()
    seqs = input_ids.new_full((B * k, 1), config.decoder_start_token_id)
    alive_logp = torch.full((B, k), -math.inf, device=device)
    alive_logp[:, 0] = 0.0
    fin_seqs = input_ids.new_full((B, k, L), config.pad_token_id)
    fin_scores = torch.full((B, k), -math.inf, device=device)
    fin_lens = torch.zeros((B, k), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    rank = torch.arange(2 * k, device=device)
    rows = torch.arange(B, device=device)[:, None] * k
    for t in range(1, L + 1):
        hidden = model.decode(seqs[:, -1:], memory, attention_mask=attention_mask, cache=cache)
        logp = F.log_softmax(model.lm_head(hidden.last_hidden_state[:, -1]).float(), dim=-1)
        V = logp.size(-1)
        candidates = (alive_logp.view(B * k, 1) + logp).view(B, k * V)
        top_logp, top_index = candidates.topk(2 * k, dim=1)
        beam, token = top_index // V, top_index % V
        is_eos = token == config.eos_token_id
        at_limit = (max_len == t)[:, None]
        finish = ((is_eos & (rank < k)) | at_limit) & top_logp.isfinite() & ~done[:, None]
        if bool(finish.any()):
            prefix = seqs.view(B, k, t)[:, :, 1:]
            prefix = prefix.gather(1, beam[..., None].expand(-1, -1, t - 1))
            new_seqs = torch.cat([prefix, token[..., None]], dim=2)
            new_seqs = F.pad(new_seqs, (0, L - t), value=config.pad_token_id)
            new_scores = top_logp / length_penalty_gnmt(t, length_penalty)
            new_scores = new_scores.masked_fill(~finish, -math.inf)
            fin_scores, keep = torch.cat([fin_scores, new_scores], dim=1).topk(k, dim=1)
            all_seqs = torch.cat([fin_seqs, new_seqs], dim=1)
            fin_seqs = all_seqs.gather(1, keep[..., None].expand(-1, -1, L))
            all_lens = torch.cat([fin_lens, torch.full_like(new_scores, t, dtype=torch.long)], 1)
            fin_lens = all_lens.gather(1, keep)
        alive = (is_eos.long() * 2 * k + rank).topk(k, dim=1, largest=False).indices
        alive_logp = top_logp.gather(1, alive)
        index = (rows + beam.gather(1, alive)).view(B * k)
        seqs = torch.cat([seqs[index], token.gather(1, alive).view(B * k, 1)], dim=1)
        cache.reorder(index)
        best_alive = alive_logp.max(dim=1).values / length_penalty_gnmt(t, length_penalty)
        worst_finished = fin_scores[:, -1]
        done |= worst_finished.isfinite() & (best_alive <= worst_finished)
        done |= max_len <= t
        alive_logp = alive_logp.masked_fill(done[:, None], -math.inf)
        if bool(done.all()):
            break
    width = int(fin_lens[:, 0].max())
    return BeamOutput(sequences=fin_seqs[:, 0, :width], scores=fin_scores[:, 0])


def _old_penalize(logits: Tensor, sequences: Tensor, penalty: float) -> Tensor:
    if penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, sequences)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, sequences, seen)


def _old_filter(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        drop = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1) >= top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def old_causal_generate(model, input_ids, attention_mask=None, *, max_new_tokens=20,
                        do_sample=False, temperature=1.0, top_k=0, top_p=1.0,
                        repetition_penalty=1.0, eos_token_id=None, pad_token_id=None,
                        seed=None) -> Tensor:
    """The old decoder-only `generate` (GPT-2 / LLaMA `model.generate`), growing cache."""
    eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
    pad = eos if pad_token_id is None else pad_token_id
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    model.eval()
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    cache = model.new_cache(None)
    logits = model(input_ids, attention_mask=mask, position_ids=positions, cache=cache).logits
    sequences = input_ids
    finished = torch.zeros(input_ids.size(0), dtype=torch.bool)
    next_position = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        scores = _old_penalize(logits[:, -1].float(), sequences, repetition_penalty)
        if do_sample:
            scores = _old_filter(scores / temperature, top_k, top_p)
            next_ids = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
        else:
            next_ids = scores.argmax(-1)
        next_ids = next_ids.masked_fill(finished, pad)
        sequences = torch.cat([sequences, next_ids[:, None]], dim=1)
        finished |= next_ids == eos
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = model(next_ids[:, None], attention_mask=mask, position_ids=next_position,
                       cache=cache).logits
        next_position = next_position + 1
    return sequences
