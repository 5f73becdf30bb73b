"""Decoding and scoring for the translation task (Vaswani et al. 2017, sec. 6.1: beam search
with beam 4 and length penalty 0.6, BLEU): a model's translations of many sentences, batched by
length, and sacreBLEU BLEU / chrF overall, by source length and on named test subsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from attnlab.data.batching import iterate_in_order
from attnlab.data.parallel import ParallelCorpus
from attnlab.errors import DataError
from attnlab.evaluation import bucket_bleu, score_corpus
from attnlab.generation import greedy_decode
from attnlab.generation.beam import beam_search
from attnlab.tokenizers import Tokenizer
from attnlab.training.run import model_device


def translate(
    model: nn.Module, tokenizer: Tokenizer, sentences: list[str], *, beam_size: int = 4,
    length_penalty: float = 0.6, max_tokens: int = 6000, progress: bool = False,
    beam_rules: Mapping[str, Any] | None = None,
) -> list[str]:
    """Translate sentences (batched by length, `max_tokens` padded tokens a batch, returned in
    input order; a blank sentence translates to "", so output i always belongs to input i).
    `beam_rules`: further `beam_search` keywords (Hugging Face's ranking, forced EOS and bad
    words for a folder transformers wrote: `io.hugging_face_beam_rules`).
    `progress`: a bar of sentences done on stderr (test-set beam search takes minutes on a
    CPU); off by default so library calls and per-validation decoding stay quiet."""
    outputs: list[str] = [""] * len(sentences)
    real = [i for i, sentence in enumerate(sentences) if sentence.strip()]
    if not real:
        return outputs
    model.eval()
    encoded = [(ids, ids) for ids in
               tokenizer.encode_batch([sentences[i] for i in real], add_eos=True)]
    limit = model.config.max_seq_len
    for j, (ids, _) in enumerate(encoded):
        if len(ids) > limit:
            raise DataError(
                f"sentence {real[j] + 1} has {len(ids)} subwords, more than the model's "
                f"max_seq_len={limit}; split it"
            )
    device = model_device(model)
    # Sentences, not batches: batches are formed lazily and vary in size. At most one refresh
    # a second, so a log file stays readable.
    bar = tqdm(total=len(real), desc="decode", unit="sent", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    for indices, batch in iterate_in_order(encoded, max_tokens, tokenizer.pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            if beam_size == 1:
                longest = int(batch["attention_mask"].sum(1).max())
                ids = greedy_decode(model, batch["input_ids"], batch["attention_mask"],
                                    max_new_tokens=min(limit - 1, longest + 50))
            else:
                ids = beam_search(model, batch["input_ids"], batch["attention_mask"],
                                  beam_size=beam_size, length_penalty=length_penalty,
                                  **(beam_rules or {})).sequences
        for row, index in enumerate(indices):
            outputs[real[index]] = tokenizer.decode(ids[row].tolist())
        bar.update(len(indices))
    bar.close()
    return outputs


def evaluate_pairs(
    model: nn.Module, tokenizer: Tokenizer, pairs: list[tuple[str, str]], *, beam_size: int = 4,
    length_penalty: float = 0.6, max_tokens: int = 6000, progress: bool = False,
) -> dict[str, Any]:
    """Decode the sources of `pairs` (a progress bar with `progress`) and score them against
    their references: BLEU / chrF with signatures, BLEU by source length, the hypotheses."""
    sources = [s for s, _ in pairs]
    references = [t for _, t in pairs]
    hypotheses = translate(model, tokenizer, sources, beam_size=beam_size,
                           length_penalty=length_penalty, max_tokens=max_tokens,
                           progress=progress)
    scores = score_corpus(hypotheses, references)
    return {**scores.as_dict(), "buckets": bucket_bleu(sources, hypotheses, references),
            "hypotheses": hypotheses}


def score_test_buckets(corpus: ParallelCorpus, hypotheses: list[str],
                       builtin: bool) -> dict[str, Any]:
    """BLEU on each named test subset; on the built-in corpus also the share of ambiguous nouns
    translated with the sense their context word calls for."""
    results: dict[str, Any] = {}
    test = corpus.split("test")
    for name, indices in corpus.test_buckets.items():
        if not indices:
            continue
        sources = [test[i][0] for i in indices]
        hyps = [hypotheses[i] for i in indices]
        entry: dict[str, Any] = {"sentences": len(indices),
                                 "bleu": score_corpus(hyps, [test[i][1] for i in indices]).bleu}
        if builtin and name == "ambiguous":
            from attnlab.data.corpus import sense_accuracy

            entry["sense_accuracy"] = sense_accuracy(sources, hyps)
        results[f"test_{name}"] = entry
    return results
