"""Fine-tuning starts from a pre-trained BERT encoder (Devlin et al. 2019, sec. 4.1: the same
encoder, a new classification layer on the pooled [CLS] output, all parameters trained).

`attnlab train classify --init DIR` reads a local folder written by `attnlab train mlm`, or by
`transformers` (BertForMaskedLM, BertModel or BertForSequenceClassification `save_pretrained`,
plus the tokenizer's `tokenizer.json`). Every encoder weight is kept (embeddings, layers, and
the pooler where the folder has one; a masked-LM folder has none, so the pooler starts fresh as
in `transformers`); the masked-LM or old classification head is dropped and a fresh head for
the task's labels is put on. Nothing is downloaded.

The tokenizer's own [CLS] / [SEP] / [PAD] tokens frame the texts; the names of BERT
(`[CLS]`), RoBERTa and attnlab's BPE (`<s>`) are recognised.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from torch import Tensor

from attnlab.errors import ConfigError, FolderError, MissingFileError
from attnlab.io import load_tokenizer, read_config, read_weights
from attnlab.io.hf import bert as hf_bert
from attnlab.models.auto import from_pretrained
from attnlab.models.bert import Bert, BertConfig
from attnlab.serialization import load_state_strict
from attnlab.tokenizers import Tokenizer

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """The ids that frame a text for a BERT classifier: [CLS] text [SEP], padded with [PAD]."""

    cls: int
    sep: int
    pad: int


def special_ids(tokenizer: Tokenizer, where: str) -> SpecialIds:
    """[CLS], [SEP] and [PAD] (or <s>, </s>, <pad>) of `tokenizer`, found by
    `Tokenizer.special_id` (its special tokens first); `where` names its file."""
    found = {}
    for role, fallback in (("cls", "cls"), ("sep", "sep"), ("pad", "pad")):
        found[role] = tokenizer.special_id(fallback)
        if found[role] is None:
            from attnlab.tokenizers import ROLE_NAMES

            raise ConfigError(f"{where}: the tokenizer has no {role} token; expected one of "
                              f"{list(ROLE_NAMES[role])}, got none")
    return SpecialIds(**found)


def read_bert_config(directory: Path) -> dict[str, Any]:
    """config.json of a BERT folder; a missing folder or another model is a clear error."""
    if not directory.is_dir():
        raise MissingFileError(f"--init: {directory} is not a folder; expected a BERT folder "
                               "written by `attnlab train mlm` or transformers save_pretrained")
    values = read_config(directory)
    if values.get("model_type") != "bert":
        raise FolderError(f"--init: {directory} must hold a BERT encoder (model_type 'bert'), "
                          f"got model_type {values.get('model_type')!r}")
    return values


def read_bert(directory: Path) -> tuple[BertConfig, dict[str, Tensor]]:
    """Config and weights (our names) of the BERT in `directory`, whichever head it has: a
    transformers BertModel has none, so this reads the weights rather than building the model."""
    values = read_bert_config(directory)
    if "attnlab_version" in values:  # attnlab's own layout
        model = from_pretrained(directory)
        return model.config, model.state_dict()
    config = BertConfig(**hf_bert.config_values_from_hf(values))
    return config, hf_bert.state_dict_from_hf(read_weights(directory), config)


def encoder_with_new_head(directory: str | Path, num_labels: int,
                          tokenizer: Tokenizer | None = None) -> Bert:
    """The BERT in `directory` with its head replaced by a fresh `num_labels`-way classifier;
    every other weight equals the folder's (the pooler too, where the folder has one).
    `tokenizer` (if given) must fit its vocabulary."""
    directory = Path(directory)
    config, state = read_bert(directory)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise FolderError(f"--init: {directory}/tokenizer.json has {tokenizer.vocab_size} "
                          f"tokens, more than the model's vocab_size {config.vocab_size}: "
                          "they do not belong together")
    model = Bert(dataclasses.replace(config, num_labels=num_labels))
    kept = {k: v for k, v in state.items()
            if k in model.state_dict() and not k.startswith("classifier.")}
    load_state_strict(model, kept, f"--init: {directory}", optional=("classifier.", "pooler."))
    log.info("fine-tuning the %d-layer BERT in %s with a fresh %d-label head%s",
             config.n_layers, directory, num_labels,
             "" if "pooler.weight" in kept else " and a fresh pooler (the folder has none)")
    return model


def init_classifier(directory: str | Path, num_labels: int) -> tuple[Bert, Tokenizer]:
    """Model and tokenizer for fine-tuning: checks the folder, then its tokenizer.json (it must
    have [CLS]/[SEP]/[PAD] and fit the vocabulary), then carries the encoder over."""
    directory = Path(directory)
    read_bert_config(directory)
    try:
        tokenizer = load_tokenizer(directory)
    except MissingFileError as error:
        raise MissingFileError(f"--init: {error}") from None
    special_ids(tokenizer, f"--init: {directory / 'tokenizer.json'}")
    return encoder_with_new_head(directory, num_labels, tokenizer), tokenizer

