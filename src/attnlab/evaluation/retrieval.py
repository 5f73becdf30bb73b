"""Retrieval and zero-shot scores of a joint text-image embedding (CLIP, Radford et al. 2021,
sec. 3.1.4 and 3.2): recall@k in both directions over a set of (image, caption) pairs, and
zero-shot classification by the nearest class prompt.

Captions repeat (two scenes may both be "a large three above a small one"); identical captions
embed identically, so a retrieval counts as right when the caption it finds EQUALS the true
caption, not only when it is the very same pair. Ties are scored pessimistically: a query is
right at k when fewer than k wrong candidates score at least as high as its best right one, so
a model that maps everything to one point scores 0, never a lucky first index.

    scores = retrieval_recall(image_embeds, text_embeds, captions, ks=(1, 5))
    scores["image_to_text_recall@1"], scores["text_to_image_recall@5"]
    predicted = zero_shot_predict(image_embeds, prompt_embeds)  # (N,) class index
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnlab.errors import ConfigError

DIRECTIONS = ("image_to_text", "text_to_image")


def caption_groups(captions: Sequence[str]) -> Tensor:
    """(N,) long: the index of each caption's first occurrence among the distinct captions;
    equal captions share a group."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(c, len(first)) for c in captions], dtype=torch.long)


def recall_at_k(similarity: Tensor, relevant: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """similarity (Q, C) scores of every candidate for every query, relevant (Q, C) bool ->
    {k: share of queries with fewer than k irrelevant candidates scoring >= the best relevant
    one}. A query with no relevant candidate counts as wrong."""
    if similarity.shape != relevant.shape or similarity.dim() != 2:
        raise ValueError(f"similarity and relevant must be the same (Q, C) shape, got "
                         f"{tuple(similarity.shape)} and {tuple(relevant.shape)}")
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {list(ks)}")
    scores = similarity.float()
    best = scores.masked_fill(~relevant, float("-inf")).amax(dim=1, keepdim=True)  # (Q, 1)
    wrong_above = ((scores >= best) & ~relevant).sum(dim=1)  # (Q,)
    found = relevant.any(dim=1)  # (Q,)
    return {k: float(((wrong_above < k) & found).float().mean()) for k in ks}


def retrieval_recall(image_embeds: Tensor, text_embeds: Tensor, captions: Sequence[str],
                     ks: Sequence[int] = (1, 5), *, chunk: int = 1024) -> dict[str, float]:
    """Recall@k of N pairs (image i with captions[i]) in both directions, all N pairs as the
    candidates: image -> text (rank the N captions for each image) and text -> image (rank
    the N images for each caption). Embeddings (N, P) are compared by cosine similarity (they
    are normalised here). Keys "image_to_text_recall@1", "text_to_image_recall@5", ..."""
    n = len(captions)
    if image_embeds.shape[0] != n or text_embeds.shape[0] != n:
        raise ValueError(f"need one image and one text embedding per caption: {n} captions, "
                         f"{image_embeds.shape[0]} images, {text_embeds.shape[0]} texts")
    images = torch.nn.functional.normalize(image_embeds.float(), dim=-1)  # (N, P)
    texts = torch.nn.functional.normalize(text_embeds.float(), dim=-1)  # (N, P)
    groups = caption_groups(captions)  # (N,)
    totals = {(d, k): 0.0 for d in DIRECTIONS for k in ks}
    for start in range(0, n, chunk):  # queries in chunks: (chunk, N) at a time
        rows = slice(start, start + chunk)
        relevant = groups[rows, None] == groups[None, :]  # (q, N)
        for direction, queries, candidates in (("image_to_text", images, texts),
                                               ("text_to_image", texts, images)):
            similarity = queries[rows] @ candidates.T  # (q, N)
            for k, share in recall_at_k(similarity, relevant, ks).items():
                totals[direction, k] += share * relevant.size(0)
    return {f"{d}_recall@{k}": round(totals[d, k] / max(n, 1), 5) for d in DIRECTIONS
            for k in ks}


def zero_shot_predict(image_embeds: Tensor, prompt_embeds: Tensor) -> Tensor:
    """image_embeds (N, P), prompt_embeds (K, P) -> (N,) the class whose prompt is nearest by
    cosine similarity (the argmax of CLIP's logits_per_image)."""
    images = torch.nn.functional.normalize(image_embeds.float(), dim=-1)
    prompts = torch.nn.functional.normalize(prompt_embeds.float(), dim=-1)
    return (images @ prompts.T).argmax(dim=-1)


def confusion_matrix(labels: Tensor, predicted: Tensor, classes: int) -> Tensor:
    """(classes, classes) counts, rows the true class, columns the predicted one."""
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((labels.long(), predicted.long()), torch.ones_like(predicted.long()),
                         accumulate=True)
    return confusion


def prompts_of(template: str, names: Sequence[str]) -> list[str]:
    """The class prompts: `template` with "{}" replaced by each name ("a large {}" + "three"
    -> "a large three"); a template without "{}" is a ConfigError."""
    if "{}" not in template:
        raise ConfigError(f"--template: a prompt template needs '{{}}' where the class name "
                          f"goes, got {template!r}")
    return [template.replace("{}", name) for name in names]
