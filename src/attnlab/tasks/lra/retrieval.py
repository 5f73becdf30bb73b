"""Key-value retrieval at a controlled long distance: an associative-recall task in the spirit
of the "needle" and "associative recall" probes used for long-context models (e.g. Ba et al.,
2016, "Using Fast Weights to Attend to the Recent Past").

A sequence lists `n_pairs` (key, value) token pairs with distinct keys, then a query marker and
one of the keys: k_1 v_1 k_2 v_2 ... k_n v_n [Q] k_i. The label is v_i, so there are `n_values`
classes. Values are balanced within a sequence, so counting them does not give the answer
away. The queried pair is drawn among those whose key lies at least `min_distance` tokens
before the query key, so the answer is always far from the end of the sequence.

This is NOT the Retrieval task of Long Range Arena (document matching on the ACL Anthology
Network): numbers from the two do not compare.
"""

from __future__ import annotations

import random

from attnlab.tasks.lra.data import TaskData, pad_sequences, round_up

SPECIALS = ("[PAD]", "[Q]")


def vocabulary(n_keys: int, n_values: int) -> tuple[str, ...]:
    """[PAD], [Q], keys k0.., values v0.. (value j has id len(SPECIALS) + n_keys + j)."""
    return (*SPECIALS, *(f"k{i}" for i in range(n_keys)), *(f"v{j}" for j in range(n_values)))


def query_distance(n_pairs: int, pair_index: int) -> int:
    """Positions from the key of pair `pair_index` (0-based, at 2 * pair_index) to the query
    key, the last of the 2 * n_pairs + 2 tokens."""
    return 2 * (n_pairs - pair_index) + 1


def make_example(rng: random.Random, *, n_pairs: int, n_keys: int, n_values: int,
                 min_distance: int) -> tuple[list[int], int, int]:
    """(token ids, label, distance) of one sequence."""
    first_key, first_value = len(SPECIALS), len(SPECIALS) + n_keys
    keys = rng.sample(range(n_keys), n_pairs)
    # every value equally often (up to n_pairs mod n_values pairs): counting values, which mean
    # pooling does for free, must not hint at the answer
    values = [i % n_values for i in range(n_pairs - n_pairs % n_values)]
    values += [rng.randrange(n_values) for _ in range(n_pairs % n_values)]
    rng.shuffle(values)
    # pairs far enough from the end: query_distance(n_pairs, i) >= min_distance
    last_allowed = n_pairs - -(-(min_distance - 1) // 2)
    queried = rng.randint(0, last_allowed)
    ids = [t for k, v in zip(keys, values, strict=True) for t in (first_key + k, first_value + v)]
    ids += [SPECIALS.index("[Q]"), first_key + keys[queried]]
    return ids, values[queried], query_distance(n_pairs, queried)


def make_retrieval(*, train_size: int, test_size: int, n_pairs: int, n_keys: int,
                   n_values: int, min_distance: int, seed: int = 0) -> TaskData:
    """The task with sequences of 2 * n_pairs + 2 tokens (padded to a multiple of 64)."""
    if n_keys < n_pairs:
        raise ValueError(f"n_keys must be >= n_pairs ({n_pairs}) for distinct keys, got {n_keys}")
    if n_values < 2:
        raise ValueError(f"n_values must be >= 2 (the classes), got {n_values}")
    if not 2 <= min_distance <= 2 * n_pairs + 1:
        raise ValueError(f"min_distance must be in [2, 2 * n_pairs + 1 = {2 * n_pairs + 1}], "
                         f"got {min_distance}")
    rng = random.Random(seed)
    vocab = vocabulary(n_keys, n_values)
    seq_len = round_up(2 * n_pairs + 2, 64)
    splits = []
    for size in (train_size, test_size):
        rows = [make_example(rng, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values,
                             min_distance=min_distance) for _ in range(size)]
        splits.append(pad_sequences([ids for ids, _, _ in rows], [y for _, y, _ in rows],
                                    seq_len))
    return TaskData("retrieval", vocab, n_values, seq_len, *splits,
                    notes=f"{n_pairs} pairs of {n_keys} keys / {n_values} values, queried key "
                          f">= {min_distance} tokens before the query")
