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
import json
import logging
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import Tensor

from attnlab.interop import bert as hf_bert
from attnlab.interop.hf_folder import from_pretrained, read_weights
from attnlab.models.bert import Bert, BertConfig

log = logging.getLogger(__name__)

CLS_NAMES = ("[CLS]", "<s>", "<cls>")
SEP_NAMES = ("[SEP]", "</s>", "<sep>")
PAD_NAMES = ("[PAD]", "<pad>")


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """The ids that frame a text for a BERT classifier: [CLS] text [SEP], padded with [PAD]."""

    cls: int
    sep: int
    pad: int


def special_ids(tokenizer: Tokenizer, where: str) -> SpecialIds:
    """[CLS], [SEP] and [PAD] (or <s>, </s>, <pad>) of `tokenizer`, its special tokens first
    (a learnt subword that happens to read "[CLS]" never wins); `where` names its file."""
    added = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    found = {}
    for role, names in (("cls", CLS_NAMES), ("sep", SEP_NAMES), ("pad", PAD_NAMES)):
        ids = [added[name] for name in names if name in added] or [
            i for i in map(tokenizer.token_to_id, names) if i is not None]
        if not ids:
            raise ValueError(f"{where}: the tokenizer has no {role} token; expected one of "
                             f"{list(names)}, got none")
        found[role] = ids[0]
    return SpecialIds(**found)


def load_init_tokenizer(directory: Path) -> Tokenizer:
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--init: {path} not found: the encoder's tokenizer must sit beside its weights "
            "(`attnlab train mlm` writes it; with transformers, `tokenizer.save_pretrained(DIR)` "
            "of a fast tokenizer does)")
    return Tokenizer.from_file(str(path))


def read_bert_config(directory: Path) -> dict[str, Any]:
    """config.json of a BERT folder; a missing folder or another model is a clear error."""
    if not directory.is_dir():
        raise FileNotFoundError(f"--init: {directory} is not a folder; expected a BERT folder "
                                "written by `attnlab train mlm` or transformers save_pretrained")
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--init: {path} not found: {directory} is not a model folder")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        model_type = values.get("model_type")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"--init: {path} is not a JSON config ({error})") from None
    if model_type != "bert":
        raise ValueError(f"--init: {directory} must hold a BERT encoder (model_type 'bert'), "
                         f"got model_type {model_type!r}")
    return values


def read_bert(directory: Path) -> tuple[BertConfig, dict[str, Tensor]]:
    """Config and weights (our names) of the BERT in `directory`, whichever head it has: a
    transformers BertModel has none, so this reads the weights rather than building the model."""
    values = read_bert_config(directory)
    if "attnlab_version" in values:  # attnlab's own layout
        model = from_pretrained(directory)
        return model.config, model.state_dict()
    config = hf_bert.config_from_hf(values)
    return config, hf_bert.state_dict_from_hf(read_weights(directory), config)


def encoder_with_new_head(directory: str | Path, num_labels: int,
                          tokenizer: Tokenizer | None = None) -> Bert:
    """The BERT in `directory` with its head replaced by a fresh `num_labels`-way classifier;
    every other weight equals the folder's (the pooler too, where the folder has one).
    `tokenizer` (if given) must fit its vocabulary."""
    directory = Path(directory)
    config, state = read_bert(directory)
    if tokenizer is not None and tokenizer.get_vocab_size() > config.vocab_size:
        raise ValueError(f"--init: {directory}/tokenizer.json has {tokenizer.get_vocab_size()} "
                         f"tokens, more than the model's vocab_size {config.vocab_size}: "
                         "they do not belong together")
    model = Bert(dataclasses.replace(config, num_labels=num_labels))
    expected = model.state_dict()
    fresh = {k for k in expected if k.startswith(("classifier.", "pooler."))}
    kept = {k: v for k, v in state.items() if k in expected and not k.startswith("classifier.")}
    missing = sorted(set(expected) - set(kept) - fresh)
    mismatched = sorted(f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                        for k, v in kept.items() if v.shape != expected[k].shape)
    if missing or mismatched:
        raise ValueError(f"--init: {directory}: the encoder weights do not fit its config: "
                         f"missing={missing[:10]}, mis-shaped={mismatched[:10]}")
    model.load_state_dict(kept, strict=False)
    log.info("fine-tuning the %d-layer BERT in %s with a fresh %d-label head%s",
             config.n_layers, directory, num_labels,
             "" if "pooler.weight" in kept else " and a fresh pooler (the folder has none)")
    return model


def init_classifier(directory: str | Path, num_labels: int) -> tuple[Bert, Tokenizer]:
    """Model and tokenizer for fine-tuning: checks the folder, then its tokenizer.json (it must
    have [CLS]/[SEP]/[PAD] and fit the vocabulary), then carries the encoder over."""
    directory = Path(directory)
    read_bert_config(directory)
    tokenizer = load_init_tokenizer(directory)
    special_ids(tokenizer, f"--init: {directory / 'tokenizer.json'}")
    return encoder_with_new_head(directory, num_labels, tokenizer), tokenizer
