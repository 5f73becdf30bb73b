"""Attention maps of a saved model on one text: load the folder and its tokenizer, frame the text
the way the family was trained, run one forward pass with `output_attentions=True` and return
an `AttentionMaps` with readable tokens on the axes (the "visualize the weights" practice of
Bahdanau et al. 2015, Fig. 3, and Vaswani et al. 2017, Figs. 3-5, for every family attnlab has).

    model, tokenizer = load_model_and_tokenizer("runs/translate")
    maps = extract_maps(model, tokenizer, "the old farmer sells red apples .")
    maps = decoder_maps(model, tokenizer, prompt_ids + output_ids)   # ids framed already

Encoder-decoders are teacher-forced: the decoder reads <start> t1 .. tn and predicts
t1 .. tn </s>. The decoder self-attention view labels positions by what they read (its keys are
those tokens); the cross-attention view labels each query by the token it predicts, as
alignment pictures do. Without a target the model's own greedy output is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError, MissingFileError
from attnlab.io import load_tokenizer, read_config
from attnlab.tokenizers import Tokenizer
from attnlab.tokenizers.bpe import byte_level_bytes
from attnlab.viz.maps import AttentionMaps, AttentionView

DECODER_ONLY = ("gpt2", "llama", "mixtral")
ENCODER_ONLY = ("bert",)
ENCODER_DECODER = ("transformer", "t5", "rnn", "convs2s")
FAMILIES = DECODER_ONLY + ENCODER_ONLY + ENCODER_DECODER


@dataclass(frozen=True)
class Encoded:
    """Token ids of one framed text and their readable strings (same length)."""

    ids: list[int]
    tokens: list[str]


def family_of(model: nn.Module) -> str:
    """The model_type of a loaded model ("gpt2", "bert", "transformer", ...)."""
    config = getattr(model, "config", None)
    family = getattr(type(config), "model_type", None)
    if family not in FAMILIES:
        raise ConfigError(f"{type(model).__name__}: model_type {family!r} has no attention maps; "
                         f"expected one of {list(FAMILIES)}")
    return family


def load_model_and_tokenizer(directory: str | Path) -> tuple[nn.Module, Tokenizer]:
    """A model folder (config.json + weights, attnlab or Hugging Face layout) and the
    `tokenizer.json` beside it, opened by the folder owner, as (model in eval mode,
    Tokenizer). The config and tokenizer are checked before the weights are read."""
    from attnlab.models.auto import from_pretrained

    try:
        read_config(directory)
        tokenizer = load_tokenizer(directory)
    except MissingFileError as error:
        raise MissingFileError(f"--model: {error}") from None
    model = from_pretrained(directory)
    family_of(model)
    return model, tokenizer


def readable(tokenizer: Tokenizer, token: str) -> str:
    """A token as people read it: GPT-2 byte-level symbols turned back into text (a leading
    space shown as "▁", as SentencePiece writes it), newlines and tabs escaped."""
    raw = byte_level_bytes(token) if tokenizer.is_byte_level else None
    if raw is not None:
        token = raw.decode("utf-8", errors="replace")
        token = token.replace(" ", "▁")
    return token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def encode_text(model: nn.Module, tokenizer: Tokenizer, text: str) -> Encoded:
    """`text` framed as the model's family reads its input: the tokenizer's own post-processor
    when it has one (BERT's [CLS] .. [SEP], LLaMA's <s>, T5's </s>); otherwise [CLS] .. [SEP]
    for BERT and a closing </s> for encoder-decoder sources (attnlab's translation folders)."""
    if not text.strip():
        raise ConfigError("--text is empty; give the text to look at")
    family = family_of(model)
    ids = tokenizer.encoding(text).ids
    if family in ENCODER_ONLY:
        cls, sep = tokenizer.special_id("cls"), tokenizer.special_id("sep")
        if cls is not None and ids[:1] != [cls]:
            ids = [cls, *ids]
        if sep is not None and ids[-1:] != [sep]:
            ids = [*ids, sep]
    elif family in ENCODER_DECODER:
        eos = model.config.eos_token_id
        if ids[-1:] != [eos]:
            ids = [*ids, eos]
    return _encoded(tokenizer, ids, model.config.max_seq_len, "--text")


def _encoded(tokenizer: Tokenizer, ids: list[int], limit: int, name: str) -> Encoded:
    if len(ids) > limit:
        raise ConfigError(f"{name} has {len(ids)} tokens, more than the model's "
                         f"max_seq_len={limit}; shorten it")
    tokens = [readable(tokenizer, tokenizer.id_to_token(i) or f"<{i}>") for i in ids]
    return Encoded(ids, tokens)


@torch.no_grad()
def target_ids(model: nn.Module, tokenizer: Tokenizer, source: Encoded,
               target: str | None) -> list[int]:
    """Target ids ending in </s>: `target` encoded, or the model's greedy output."""
    eos = model.config.eos_token_id
    if target is None:
        from attnlab.generation.greedy import greedy_decode

        limit = model.config.max_seq_len - 1
        out = greedy_decode(model, torch.tensor([source.ids], device=_device(model)),
                            max_new_tokens=min(limit, 2 * len(source.ids) + 10))[0].tolist()
        ids = out[: out.index(eos)] if eos in out else out
    else:
        if not target.strip():
            raise ConfigError("--target is empty; give a translation or leave it out")
        ids = tokenizer.encoding(target).ids
        ids = ids[:-1] if ids[-1:] == [eos] else ids
    return [*ids, eos]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _stack(weights: tuple[Tensor, ...] | None, what: str) -> Tensor:
    if not weights:
        raise ValueError(f"the model returned no {what} weights")
    return torch.stack([w[0] for w in weights]).float().cpu()  # (L, H, T, S)


@torch.no_grad()
def extract_maps(model: nn.Module, tokenizer: Tokenizer, text: str, target: str | None = None,
                 *, name: str = "model") -> AttentionMaps:
    """Every attention view of `model` on `text` (and `target` for encoder-decoders)."""
    family = family_of(model)
    if target is not None and family not in ENCODER_DECODER:
        raise ConfigError(f"--target is for encoder-decoder models; {name} is a {family} model, "
                         "which reads only --text")
    source = encode_text(model, tokenizer, text)
    if family not in ENCODER_DECODER:
        return decoder_maps(model, tokenizer, source.ids, name=name)
    model.eval()
    return seq2seq_maps(model, tokenizer, source.ids, target_ids(model, tokenizer, source, target),
                        name=name)


@torch.no_grad()
def decoder_maps(model: nn.Module, tokenizer: Tokenizer, ids: list[int], *,
                 name: str = "model") -> AttentionMaps:
    """The self-attention of a one-stack model (decoder-only: causal; encoder-only: both ways)
    over the token ids `ids`, framed already (`encode_text`, or a prompt and what the model
    generated after it): one view, (L, H, T, T), with readable tokens on both axes."""
    family = family_of(model)
    if family in ENCODER_DECODER:
        raise ConfigError(f"{name} is a {family} encoder-decoder; its maps need source and "
                         "target ids (seq2seq_maps)")
    model.eval()
    tokens = _encoded(tokenizer, list(ids), model.config.max_seq_len, "the text")
    input_ids = torch.tensor([tokens.ids], device=_device(model))  # (1, T)
    out = model(input_ids, output_attentions=True)
    view_name = "self-attention" if family in ENCODER_ONLY else "causal self-attention"
    view = AttentionView(view_name, "self", tuple(tokens.tokens), tuple(tokens.tokens),
                         _stack(out.attentions, "self-attention"))
    return AttentionMaps(name, family, (view,))


@torch.no_grad()
def seq2seq_maps(model: nn.Module, tokenizer: Tokenizer, source_ids: list[int],
                 target: list[int], *, name: str = "model") -> AttentionMaps:
    """The views of an encoder-decoder teacher-forced on `target` (ids; `target_ids` ends them
    in </s>, a generated answer may not): the decoder reads <start> t1 .. t(n-1) and predicts
    t1 .. tn, so the last cross-attention row is the query that produced tn."""
    family = family_of(model)
    if family not in ENCODER_DECODER:
        raise ConfigError(f"{name} is a {family} model, not an encoder-decoder (decoder_maps)")
    model.eval()
    limit = model.config.max_seq_len
    source = _encoded(tokenizer, list(source_ids), limit, "--text")
    decoder_in = _encoded(tokenizer, [model.config.decoder_start_token_id, *target[:-1]],
                          limit, "--target")
    predicted = _encoded(tokenizer, list(target), limit, "--target")
    out = model(torch.tensor([source.ids], device=_device(model)),  # (1, S)
                torch.tensor([decoder_in.ids], device=_device(model)),  # (1, T)
                output_attentions=True)
    views = []
    if out.encoder_attentions:
        views.append(AttentionView("encoder self-attention", "self", tuple(source.tokens),
                                   tuple(source.tokens), _stack(out.encoder_attentions, "")))
    if out.decoder_attentions:
        views.append(AttentionView("decoder self-attention", "self", tuple(decoder_in.tokens),
                                   tuple(decoder_in.tokens), _stack(out.decoder_attentions, "")))
    if out.cross_attentions:
        views.append(AttentionView("cross-attention", "cross", tuple(predicted.tokens),
                                   tuple(source.tokens), _stack(out.cross_attentions, "")))
    if not views:
        raise ConfigError(f"{name} ({family}) has no attention to show (an RNN without "
                         "attention, such as the Sutskever baseline?)")
    return AttentionMaps(name, family, tuple(views))


def maps_from_folder(directory: str | Path, text: str, target: str | None = None
                     ) -> AttentionMaps:
    """`extract_maps` on the model folder `directory`."""
    model, tokenizer = load_model_and_tokenizer(directory)
    return extract_maps(model, tokenizer, text, target, name=str(directory))
