"""Key-value retrieval at a controlled long distance: a one-hop associative-recall task in the
spirit of the "associative recall" and "needle in a haystack" probes used for long-context
models (e.g. Ba et al., 2016, "Using Fast Weights to Attend to the Recent Past").

A sequence of `length` tokens is a query token followed by fillers, among which `n_pairs` pair
tokens with distinct keys sit at random positions of the far region, at least `min_distance`
positions after the query:

    position:  0        1 .. min_distance - 1    min_distance .. length - 1
    token:     [Q k_i]  [FILL] ... [FILL]        [FILL] k_3:v_0 ... k_i:v_2 ... [FILL]
    label:     v_2 (the value of the one pair token whose key is k_i)

Each pair token carries one key AND its value (id = pair_id(key, value)); the query token names
the key asked for; the classifier reads position 0 (the task's pooling is "first": the query
token plays the role of LRA's [CLS] token). So ONE attention hop answers it: the query's row
finds, by content, the one pair token holding k_i and copies its value to position 0. (An
earlier version spread a pair over two tokens, k v ... [Q] k, which needs a first layer to
attach each value to its key before the query can find it; a one-layer model could not learn
that.)

No pair lies within `min_distance` of the query, so a mechanism whose position 0 sees only its
`window` neighbours (a window of 64 with min_distance 65, in one layer) sees fillers and can only
guess, while one whose first token is global (Longformer's global tokens, BigBird's global block)
or which attends everywhere (exact, low-rank, kernel attention) can reach the answer. Values are
balanced within a sequence (each value n_pairs // n_values times, the n_pairs mod n_values left
over distinct), so counting values gives nothing away; and since the pairs near the query would
tell a short-sighted model which values are NOT the answer, there are none there.

This is NOT the Retrieval task of Long Range Arena (document matching on the ACL Anthology
Network): numbers from the two do not compare.
"""

from __future__ import annotations

import random

from attnlab.studies.lra.data import PAD_ID, TaskData, pad_sequences, round_up

SPECIALS = ("[PAD]", "[FILL]")
FILL_ID = SPECIALS.index("[FILL]")
assert SPECIALS.index("[PAD]") == PAD_ID


def vocabulary(n_keys: int, n_values: int) -> tuple[str, ...]:
    """[PAD], [FILL], query tokens [Q k0].. (id query_id(key)), pair tokens k0:v0.. (id
    pair_id(key, value))."""
    queries = (f"[Q k{i}]" for i in range(n_keys))
    pairs = (f"k{i}:v{j}" for i in range(n_keys) for j in range(n_values))
    return (*SPECIALS, *queries, *pairs)


def query_id(key: int) -> int:
    return len(SPECIALS) + key


def pair_id(key: int, value: int, *, n_keys: int, n_values: int) -> int:
    return len(SPECIALS) + n_keys + key * n_values + value


def split_pair(token: int, *, n_keys: int, n_values: int) -> tuple[int, int]:
    """(key, value) of a pair token id (the inverse of pair_id)."""
    return divmod(token - len(SPECIALS) - n_keys, n_values)


def make_example(rng: random.Random, *, length: int, n_pairs: int, n_keys: int, n_values: int,
                 min_distance: int) -> tuple[list[int], int, int]:
    """(token ids, label, distance from the query to the queried pair) of one sequence."""
    keys = rng.sample(range(n_keys), n_pairs)
    # every value equally often; the n_pairs mod n_values left over are distinct values, so no
    # count differs by more than one and counting values gives nothing away
    values = [i % n_values for i in range(n_pairs - n_pairs % n_values)]
    values += rng.sample(range(n_values), n_pairs % n_values)
    rng.shuffle(values)
    ids = [FILL_ID] * length
    slots = rng.sample(range(min_distance, length), n_pairs)  # every pair in the far region
    for slot, key, value in zip(slots, keys, values, strict=True):
        ids[slot] = pair_id(key, value, n_keys=n_keys, n_values=n_values)
    queried = rng.randrange(n_pairs)
    ids[0] = query_id(keys[queried])
    return ids, values[queried], slots[queried]


def make_retrieval(*, train_size: int, test_size: int, length: int, n_pairs: int, n_keys: int,
                   n_values: int, min_distance: int, seed: int = 0) -> TaskData:
    """The task with sequences of `length` tokens (padded to a multiple of 64), read at the
    query token (position 0)."""
    if n_values < 2:
        raise ValueError(f"n_values must be >= 2 (the classes), got {n_values}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if n_keys < n_pairs:
        raise ValueError(f"n_keys must be >= n_pairs ({n_pairs}) for distinct keys, got {n_keys}")
    if min_distance < 1:
        raise ValueError(f"min_distance must be >= 1, got {min_distance}")
    if length < min_distance + n_pairs:
        raise ValueError(f"length must be >= min_distance + n_pairs = {min_distance + n_pairs} "
                         f"(every pair at least min_distance after the query), got {length}")
    rng = random.Random(seed)
    vocab = vocabulary(n_keys, n_values)
    seq_len = round_up(length, 64)
    splits = []
    for size in (train_size, test_size):
        rows = [make_example(rng, length=length, n_pairs=n_pairs, n_keys=n_keys,
                             n_values=n_values, min_distance=min_distance) for _ in range(size)]
        splits.append(pad_sequences([ids for ids, _, _ in rows], [y for _, y, _ in rows],
                                    seq_len))
    return TaskData("retrieval", vocab, n_values, seq_len, *splits, pooling="first",
                    notes=f"{length} tokens: query token, then {n_pairs} pair tokens (keys of "
                          f"{n_keys}, {n_values} values) among fillers, all >= {min_distance} "
                          "positions after the query; read at the query token")
