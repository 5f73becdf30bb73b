"""Hugging Face layouts, one file per family: config fields and weight names both ways.

Each module has MODEL_TYPE (our family), config_values_from_hf(hf config dict) -> our config
values, config_to_hf(config), state_dict_from_hf(hf state, config) and state_dict_to_hf(model);
optionally optional_prefixes(hf config dict): our weight names such a folder may lack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

log = logging.getLogger(__name__)


def drop_ids_outside_vocabulary(values: dict[str, Any], names: tuple[str, ...],
                                family: str) -> dict[str, Any]:
    """transformers loads a config whose special token ids lie outside the vocabulary (a small
    GPT-2 that kept the default bos_token_id 50256) and only warns; so do we, dropping the id
    (generation then has no such token and does not stop early on it)."""
    vocab_size = values["vocab_size"]
    for name in names:
        value = values.get(name)
        if isinstance(value, int) and not 0 <= value < vocab_size:
            log.warning("%s config: %s=%d is outside the vocabulary of %d tokens; ignoring it",
                        family, name, value, vocab_size)
            values[name] = None
    return values


def renamed_from_hf(hf: dict[str, Tensor], pairs: list[tuple[str, str]], ignored: Iterable[str],
                    family: str) -> dict[str, Tensor]:
    """Our names for the tensors of `hf` that map one to one ((ours, HF) `pairs`); an HF
    tensor neither mapped nor `ignored` (tied copies, old buffers) is named in a ValueError."""
    unexpected = sorted(set(hf) - {h for _, h in pairs} - set(ignored))
    if unexpected:
        raise ValueError(f"unexpected {family} weights for this config: {unexpected[:10]}")
    return {o: hf[h] for o, h in pairs if h in hf}


def renamed_to_hf(model: nn.Module, pairs: list[tuple[str, str]]) -> dict[str, Tensor]:
    """The model's tensors under their HF names ((ours, HF) `pairs`)."""
    state = model.state_dict()
    return {h: state[o] for o, h in pairs}
