"""Recall@k both ways with repeated captions, pessimistic ties, against a brute-force rank
count; zero-shot prediction and its confusion matrix."""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.evaluation.retrieval import (
    caption_groups,
    confusion_matrix,
    prompts_of,
    recall_at_k,
    retrieval_recall,
    zero_shot_predict,
)


def brute_force(similarity, captions, k):
    """Rank list by rank list: sort candidates (ties: wrong ones first), right when a
    candidate with the query's caption is in the first k."""
    n = len(captions)
    right = 0
    for q in range(n):
        order = sorted(range(n), key=lambda c: (-float(similarity[q, c]),
                                                captions[c] == captions[q]))
        right += any(captions[c] == captions[q] for c in order[:k])
    return right / n


def test_recall_matches_a_brute_force_ranking_with_repeated_captions():
    torch.manual_seed(0)
    captions = ["a", "b", "a", "c", "d", "b", "e", "a", "f", "g"]
    images, texts = torch.randn(10, 6), torch.randn(10, 6)
    scores = retrieval_recall(images, texts, captions, ks=(1, 2, 5), chunk=3)
    norm = torch.nn.functional.normalize
    sim = norm(images, dim=-1) @ norm(texts, dim=-1).T  # (images, texts)
    for k in (1, 2, 5):
        assert scores[f"image_to_text_recall@{k}"] == pytest.approx(
            brute_force(sim, captions, k), abs=1e-5)
        assert scores[f"text_to_image_recall@{k}"] == pytest.approx(
            brute_force(sim.T, captions, k), abs=1e-5)


def test_an_identical_caption_of_another_pair_counts_as_right():
    # image 0 is nearest to text 2, which has image 0's caption: right at 1
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    texts = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    scores = retrieval_recall(images, texts, ["x", "y", "x"], ks=(1,))
    assert scores["image_to_text_recall@1"] == pytest.approx(1.0)
    # distinct captions: the same embeddings now miss image 0's pair at rank 1
    assert retrieval_recall(images, texts, ["x", "y", "z"], ks=(1,))[
        "image_to_text_recall@1"] < 1.0


def test_collapsed_embeddings_score_zero_not_a_lucky_index():
    same = torch.ones(8, 4)
    scores = retrieval_recall(same, same, [str(i) for i in range(8)], ks=(1, 5))
    assert scores["image_to_text_recall@1"] == 0.0 and scores["text_to_image_recall@5"] == 0.0
    # perfect embeddings: one-hot pairs
    eye = torch.eye(8)
    assert set(retrieval_recall(eye, eye, [str(i) for i in range(8)]).values()) == {1.0}


def test_recall_at_k_checks_shapes_and_queries_without_a_right_candidate():
    similarity = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    relevant = torch.tensor([[True, False], [False, False]])
    assert recall_at_k(similarity, relevant, (1, 2)) == {1: 0.5, 2: 0.5}
    with pytest.raises(ValueError, match="same"):
        recall_at_k(similarity, relevant[:1], (1,))
    with pytest.raises(ValueError, match="one image and one text"):
        retrieval_recall(torch.randn(3, 2), torch.randn(2, 2), ["a", "b", "c"])


def test_groups_zero_shot_and_confusion():
    assert caption_groups(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    images = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, -0.2], [0.0, 1.0]])
    predicted = zero_shot_predict(images, prompts)
    assert predicted.tolist() == [0, 1, 2, 1]
    confusion = confusion_matrix(torch.tensor([0, 1, 2, 2]), predicted, 3)
    assert confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert prompts_of("a large {}", ["one", "two"]) == ["a large one", "a large two"]
    with pytest.raises(ConfigError, match="template"):
        prompts_of("a large", ["one"])
