"""Tiny model folders for the HTTP tests of the server, and the parsing of its event streams.

    folder = gpt2_folder(tmp_path / "gpt2")              # random gpt2-tiny + byte-level BPE
    with ServerProcess(folder, "--max-batch", "4") as server:   # attnlab.serve.process
        events = sse_data(httpx.stream(...).iter_lines())

Each folder holds random weights of a `*-tiny` preset and a small byte-level tokenizer trained on
fixed text (some of it multi-byte), saved with `save_pretrained` + tokenizer.json, so the same
call builds the same folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer

TEXT = ["the apple was juicy and red", "apple stock crashed on monday",
        "the farmer sells red apples", "stock prices fell again today",
        "héllo wörld, ça va ? 日本語 テキスト", "the quick brown fox jumps over the lazy dog"] * 4
VOCAB = 300


def _tokenizer(specials: list[str]) -> Tokenizer:
    return Tokenizer.train_byte_level(TEXT, VOCAB, specials)


def _save(preset: str, path: Path, tokenizer: Tokenizer, **overrides) -> Path:
    torch.manual_seed(0)
    model = build_model(preset, vocab_size=tokenizer.vocab_size, **overrides)
    model.save_pretrained(path)
    tokenizer.save(Path(path) / "tokenizer.json")
    return Path(path)


def gpt2_folder(path: str | Path, **overrides) -> Path:
    """gpt2-tiny, <|endoftext|> = 0 as BOS and EOS (GPT-2's habit); `overrides` change its
    config (e.g. max_seq_len=16384 for requests that stay busy for seconds)."""
    return _save("gpt2-tiny", Path(path), _tokenizer(["<|endoftext|>"]), bos_token_id=0,
                 eos_token_id=0, **overrides)


def llama_folder(path: str | Path) -> Path:
    """llama-tiny, <unk>=0 <s>=1 </s>=2; the tokenizer frames a text with <s> as LLaMA's does."""
    from tokenizers import processors

    tokenizer = _tokenizer(["<unk>", "<s>", "</s>"])
    tokenizer.backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)])
    return _save("llama-tiny", Path(path), tokenizer)


def mamba_folder(path: str | Path) -> Path:
    """mamba-tiny (a recurrent family: a fixed-size state per row of the batch), <|endoftext|>
    = 0 as BOS and EOS."""
    return _save("mamba-tiny", Path(path), _tokenizer(["<|endoftext|>"]), bos_token_id=0,
                 eos_token_id=0)


def t5_folder(path: str | Path) -> Path:
    """t5-tiny, <pad>=0 (decoder start) </s>=1 <unk>=2."""
    return _save("t5-tiny", Path(path), _tokenizer(["<pad>", "</s>", "<unk>"]))


def bert_folder(path: str | Path) -> Path:
    """bert-tiny (encoder-only: embeddings, no completions), [PAD]=0 [MASK] [CLS] [SEP]."""
    return _save("bert-tiny", Path(path), _tokenizer(["[PAD]", "[MASK]", "[CLS]", "[SEP]"]))


def sse_data(lines: Iterable[str]) -> list[Any]:
    """The `data:` payloads of a server-sent event stream, in order: JSON objects, and the
    string "[DONE]" as it comes. Any other non-empty line fails (the format is that strict)."""
    events: list[Any] = []
    for line in lines:
        if not line:
            continue
        assert line.startswith("data: "), f"not an SSE data line: {line!r}"
        payload = line[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


