"""Streaming never splits a multi-byte character; `attnlab generate` runs on a local folder."""

from __future__ import annotations

import pytest
import torch

from attnlab.cli.main import main
from attnlab.generation import generate, stream_text
from attnlab.interop.hf_folder import save_hf
from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer

TEXT = ["héllo wörld, ça va ? 日本語 テキスト", "the quick brown fox jumps over the lazy dog"] * 20


@pytest.fixture(scope="module")
def byte_tokenizer():
    return Tokenizer.train_byte_level(TEXT, 300, ["<|endoftext|>"])


def model_for(tokenizer, seed=0):
    torch.manual_seed(seed)
    return build_model("gpt2-tiny", vocab_size=tokenizer.vocab_size, bos_token_id=0,
                       eos_token_id=0, dropout=0.0, attention_dropout=0.0).eval()


def test_stream_pieces_are_whole_characters_and_add_up(byte_tokenizer):
    model = model_for(byte_tokenizer)
    # Bias the model towards single byte tokens of multi-byte characters: the first bytes of
    # "日" (e6 97 a5) and "é" (c3 a9) as ByteLevel maps them.
    byte_ids = [byte_tokenizer.token_to_id(t) for t in ("æ", "Ã")]
    assert None not in byte_ids
    with torch.no_grad():
        model.lm_head.weight[byte_ids] += 0.5 * model.decoder.final_norm.weight
    pieces = list(stream_text(model, byte_tokenizer, "héllo", max_new_tokens=40,
                              do_sample=True, seed=0, eos_token_id=-1))
    # A piece is never emitted mid-character: it never ends in the replacement character that
    # an incomplete UTF-8 sequence decodes to (bytes that turn out invalid still show as U+FFFD
    # once the next byte proves them so).
    assert pieces and not any(p.endswith("\ufffd") for p in pieces)
    ids = generate(model, torch.tensor([byte_tokenizer.encoding("héllo").ids]),
                   max_new_tokens=40, do_sample=True, seed=0, eos_token_id=-1)
    full = byte_tokenizer.decode(ids[0, len(byte_tokenizer.encoding("héllo").ids):].tolist())
    assert full.startswith("".join(pieces))  # held-back bytes at the very end may remain


def test_generate_cli_streams_from_a_folder(tmp_path, capsys, byte_tokenizer):
    save_hf(model_for(byte_tokenizer), tmp_path)
    byte_tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert main(["generate", "--model", str(tmp_path), "--prompt", "the quick",
                 "--max-new-tokens", "5", "--do-sample", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the quick")
    assert main(["generate", "--model", str(tmp_path), "--prompt", "x", "--do-sample",
                 "--temperature", "0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
