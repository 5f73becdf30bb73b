"""Hugging Face layouts, one file per family: config fields and weight names both ways.

Each module has MODEL_TYPE (our family), config_values_from_hf(hf config dict) -> our config
values, config_to_hf(config), state_dict_from_hf(hf state, config) and state_dict_to_hf(model);
optionally optional_prefixes(hf config dict): our weight names such a folder may lack.
"""

from __future__ import annotations

import logging
from typing import Any

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
