"""generation_config.json: the decoding settings a model folder suggests (Hugging Face's file
name and keys), e.g. the beam size and length penalty a translation run was tested with.

Only the keys `model.generate` understands are read back; the bookkeeping keys transformers
adds (`transformers_version`, `_from_model_config`) and keys of decoding strategies attnlab
does not implement are ignored with a debug line, so a folder written by transformers loads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from attnlab.errors import FolderError
from attnlab.io.files import read_json, write_json

log = logging.getLogger(__name__)

GENERATION_CONFIG_NAME = "generation_config.json"
# key -> the Python types its value may have (None: the key is unset)
KEYS: dict[str, tuple[type, ...]] = {
    "max_new_tokens": (int,), "do_sample": (bool,), "temperature": (int, float),
    "top_k": (int,), "top_p": (int, float), "repetition_penalty": (int, float),
    "num_beams": (int,), "length_penalty": (int, float), "eos_token_id": (int,),
    "bos_token_id": (int,), "pad_token_id": (int,), "decoder_start_token_id": (int,),
}


def _checked(values: dict[str, Any], where: str | Path) -> dict[str, Any]:
    kept = {}
    for key, value in values.items():
        if key not in KEYS:
            log.debug("%s: ignoring %s (not a setting attnlab's generate takes)", where, key)
            continue
        if value is None:
            continue
        types = KEYS[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise FolderError(f"{where}: {key} must be {' or '.join(t.__name__ for t in types)}, "
                              f"got {value!r}")
        kept[key] = value
    return kept


def save_generation_config(directory: str | Path, values: dict[str, Any]) -> Path:
    """Write `values` (keys of `KEYS`) as the folder's generation_config.json."""
    path = Path(directory) / GENERATION_CONFIG_NAME
    return write_json(path, _checked(values, path))


def load_generation_config(directory: str | Path) -> dict[str, Any]:
    """The folder's suggested decoding settings ({} when it has no generation_config.json)."""
    path = Path(directory) / GENERATION_CONFIG_NAME
    if not path.is_file():
        return {}
    return _checked(read_json(path, "JSON object of generation settings"), path)


def hugging_face_beam_rules(directory: str | Path) -> dict[str, Any]:
    """How Hugging Face's `generate` runs beam search for a folder transformers wrote (its
    config.json has no `attnlab_version`), as `beam_search` keywords: ranking by
    log P / |Y| ** alpha with alpha 1.0 unless the folder says otherwise, EOS forced at the last
    step when `forced_eos_token_id` is the EOS id, single-token `bad_words_ids` (Marian's pad)
    never generated. Read from generation_config.json, else from config.json (older folders
    kept them there). {} for a folder attnlab wrote, whose beams rank by GNMT's penalty."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        return {}
    config = read_json(config_path, "JSON object of model settings")
    if "attnlab_version" in config:
        return {}
    path = directory / GENERATION_CONFIG_NAME
    values = read_json(path, "JSON object of generation settings") if path.is_file() else config
    eos = values.get("eos_token_id", config.get("eos_token_id"))
    bad = values.get("bad_words_ids") or []
    if not isinstance(bad, list) or not all(isinstance(w, list) for w in bad):
        raise FolderError(f"{path}: bad_words_ids must be a list of lists of ids, got {bad!r}")
    return {"length_penalty_form": "power",
            "length_penalty": values.get("length_penalty", 1.0),
            "force_eos_at_limit": eos is not None and values.get("forced_eos_token_id") == eos,
            "suppress_ids": tuple(w[0] for w in bad if len(w) == 1)}
