"""GGUF import (attnlab.io.gguf) and export (attnlab.io.gguf_write): files written from a tiny
LLaMA with grouped-query attention, query/key rows permuted as llama.cpp's converter does, load
through `attnlab.from_pretrained` into the same model; Q8_0 files load dequantized, Q4 blocks
stay 4-bit; the embedded tokenizers round-trip; bad files are one-line errors."""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

import attnlab
from attnlab.cli.main import main
from attnlab.errors import FolderError, MissingFileError
from attnlab.io import gguf_write, load_tokenizer
from attnlab.io.gguf_4bit import keep_four_bit
from attnlab.models import build_model
from attnlab.nn.quant import Int4Linear, dequantize_linears
from attnlab.tokenizers import Tokenizer

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

TEXTS = ["the quick brown fox jumps over the lazy dog", "héllo wörld, 123 times!",
         "a stitch in time saves nine"] * 4


def write_gguf(path, model, qtype=Q.F32, tokenizer=None, n_layers=None):
    return gguf_write.write_gguf(path, model, qtype.name, tokenizer, block_count=n_layers)


@pytest.fixture(scope="module")
def byte_tokenizer():
    return Tokenizer.train_byte_level(TEXTS, 320, ["<|endoftext|>"])


@pytest.fixture
def model(byte_tokenizer):
    torch.manual_seed(0)
    eos = byte_tokenizer.special_id("eos")
    return build_model("llama-tiny", vocab_size=byte_tokenizer.vocab_size, init_std=0.1,
                       bos_token_id=eos, eos_token_id=eos).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_f32_file_is_the_same_model_and_generates_the_same_tokens(tmp_path, model,
                                                                    byte_tokenizer):
    path = write_gguf(tmp_path / "tiny.gguf", model, tokenizer=byte_tokenizer)
    back = attnlab.from_pretrained(path)
    assert replace(back.config, init_std=0.1) == model.config and not back.training
    ids = torch.randint(0, model.config.vocab_size, (2, 12),
                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logits(back, ids), logits(model, ids), atol=1e-5, rtol=0)
    prompt = ids[:1, :5]
    out = model.generate(prompt, max_new_tokens=10, eos_token_id=-1)
    assert torch.equal(back.generate(prompt, max_new_tokens=10, eos_token_id=-1), out)


def test_without_undoing_the_permutation_logits_differ(tmp_path, model):
    """The test above can fail: a file whose q/k rows are left in llama.cpp's order does."""
    path = write_gguf(tmp_path / "tiny.gguf", model)
    back = attnlab.from_pretrained(path)
    with torch.no_grad():
        layer = back.decoder.layers[0].self_attn
        q = layer.q_proj.weight
        q.copy_(torch.from_numpy(gguf_write.interleave_rows(q.numpy(), 4)))
    ids = torch.arange(12).unsqueeze(0)
    assert (logits(back, ids) - logits(model, ids)).abs().max() > 1e-4


# F16 keeps 11 significant bits (relative error <= 2**-11 ~ 5e-4 per weight); Q8_0 stores each
# block of 32 weights as int8 times the block's absmax / 127 (error up to 1/254 ~ 0.4% of the
# block's largest weight). Measured on this model, as a fraction of the logits' range: F16
# 3e-4, Q8_0 9e-3; the bounds leave ~3x room. A wrong mapping or permutation moves the logits
# by their whole range (see the test above).
@pytest.mark.parametrize(("qtype", "tolerance"), [(Q.F16, 1e-3), (Q.Q8_0, 3e-2)])
def test_f16_and_q8_0_files_load_dequantized(tmp_path, model, qtype, tolerance, caplog):
    path = write_gguf(tmp_path / "tiny.gguf", model, qtype)
    kinds = {t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert qtype in kinds
    with caplog.at_level(logging.INFO, logger="attnlab.io.gguf"):
        back = attnlab.from_pretrained(path)
    assert "dequantized to float32" in caplog.text and qtype.name in caplog.text
    assert all(p.dtype == torch.float32 for p in back.parameters())
    ids = torch.arange(16).unsqueeze(0)
    want = logits(model, ids)
    error = (logits(back, ids) - want).abs().max() / (want.max() - want.min())
    assert 0 < error < tolerance


def gguf_roundtrip(model, qtype):
    """The model's state with each weight as the writer stores it and gguf dequantizes it."""
    expected = {}
    for name, tensor in model.state_dict().items():
        w = tensor.numpy()
        if w.ndim == 2 and w.shape[-1] % 32 == 0:
            w = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
        elif w.ndim == 2:
            w = w.astype(np.float16).astype(np.float32)  # the writer's F16 fallback
        expected[name] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    return expected


def test_q8_0_weights_are_exactly_gguf_s_dequantization(tmp_path, model):
    """Quantized blocks cost too much on random weights for a logits tolerance to mean much, so
    the model is compared with the original whose weights went through quantize + dequantize."""
    path = write_gguf(tmp_path / "tiny.gguf", model, Q.Q8_0)
    back = attnlab.from_pretrained(path)
    expected = gguf_roundtrip(model, Q.Q8_0)
    for name, tensor in back.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=0, rtol=0, msg=name)
    assert not torch.equal(back.decoder.layers[0].self_attn.q_proj.weight,
                           model.decoder.layers[0].self_attn.q_proj.weight)


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1])
@pytest.mark.parametrize("tied", [False, True])
def test_4_bit_blocks_stay_4_bit_and_stand_for_gguf_s_dequantization(tmp_path, model, qtype,
                                                                     tied, caplog):
    """Q4 projections load as Int4Linear whose weight is exactly gguf's dequantization (float32
    compute), and the loaded model (bf16 compute where native) stays that close to it."""
    model = build_model("llama-tiny", vocab_size=model.config.vocab_size, init_std=0.1,
                        tie_embeddings=tied).eval()
    path = write_gguf(tmp_path / "tiny.gguf", model, qtype)
    with caplog.at_level(logging.INFO, logger="attnlab.io.gguf"):
        back = attnlab.from_pretrained(path)
    assert f"13 {qtype.name} kept 4-bit" in caplog.text
    expected = gguf_roundtrip(model, qtype)
    for name, tensor in dequantize_linears(copy.deepcopy(back)).state_dict().items():
        if name != "lm_head.weight" or not tied:
            torch.testing.assert_close(tensor, expected[name], atol=2e-2, rtol=1e-2, msg=name)
    layers = {n: m for n, m in back.named_modules() if isinstance(m, Int4Linear)}
    # every projection and the output but down_proj, whose rows of 172 the writer keeps F16
    assert len(layers) == 6 * model.config.n_layers + 1
    reader = gguf.GGUFReader(path)
    exact = build_model("llama-tiny", vocab_size=model.config.vocab_size, tie_embeddings=tied)
    exact.load_state_dict(expected, strict=False)
    keep_four_bit(exact, reader, True, compute_dtype="float32")
    for name, layer in exact.named_modules():
        if isinstance(layer, Int4Linear):
            weight = expected["embed_tokens.weight" if name == "lm_head" and tied
                              else f"{name}.weight"]
            torch.testing.assert_close(layer.dequantized(), weight, atol=1e-6, rtol=0, msg=name)
    ids = torch.arange(16).unsqueeze(0)
    want = logits(exact, ids)
    assert (logits(back, ids) - want).abs().max() / (want.max() - want.min()) < 3e-2


def test_tied_embeddings_load_without_an_output_tensor(tmp_path, byte_tokenizer):
    torch.manual_seed(0)
    model = build_model("llama-tiny", tie_embeddings=True).eval()
    path = write_gguf(tmp_path / "tied.gguf", model)
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(path).tensors}
    back = attnlab.from_pretrained(path)
    assert back.config.tie_embeddings
    ids = torch.arange(8).unsqueeze(0)
    torch.testing.assert_close(logits(back, ids), logits(model, ids), atol=1e-5, rtol=0)


def test_qwen2_file_with_attention_biases_loads(tmp_path):
    torch.manual_seed(0)
    model = build_model("llama-tiny", attention_bias=True).eval()
    with torch.no_grad():
        model.decoder.layers[0].self_attn.q_proj.bias.normal_()
    path = write_gguf(tmp_path / "qwen2.gguf", model)  # biases: written as qwen2
    assert gguf.GGUFReader(path).fields["general.architecture"].contents() == "qwen2"
    back = attnlab.from_pretrained(path)
    assert back.config.attention_bias
    ids = torch.arange(8).unsqueeze(0)
    torch.testing.assert_close(logits(back, ids), logits(model, ids), atol=1e-5, rtol=0)


def test_byte_level_tokenizer_round_trips(tmp_path, model, byte_tokenizer):
    path = write_gguf(tmp_path / "tiny.gguf", model, tokenizer=byte_tokenizer)
    back = load_tokenizer(path)
    assert back.vocab_size == byte_tokenizer.vocab_size and back.is_byte_level
    for text in [*TEXTS[:3], "unseen wörds ✓ <|endoftext|> and spaces  "]:
        ids = byte_tokenizer.encode(text)
        assert back.encode(text) == ids
        assert back.backend.decode(ids, skip_special_tokens=False) == text
    assert back.special_id("eos") == byte_tokenizer.special_id("eos")


def test_generate_command_reads_a_gguf_file(tmp_path, model, byte_tokenizer, capsys):
    path = write_gguf(tmp_path / "tiny.gguf", model, tokenizer=byte_tokenizer)
    assert main(["generate", "--model", str(path), "--prompt", "the quick",
                 "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("the quick")


def test_sentencepiece_tokenizer_merges_by_score_and_falls_back_to_bytes(tmp_path):
    pieces = {"ll": -1.0, "▁h": -2.0, "▁he": -3.0, "llo": -4.0, "▁hello": -5.0, "▁w": -6.0,
              "or": -7.0, "▁wor": -8.0, "ld": -9.0}
    chars = ["▁", "h", "e", "l", "o", "w", "r", "d"]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *chars, *pieces]
    types = [2, 3, 3, *[6] * 256, *[1] * (len(chars) + len(pieces))]
    scores = [0.0] * 259 + [-100.0] * len(chars) + list(pieces.values())
    writer = gguf.GGUFWriter(str(tmp_path / "spm.gguf"), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    tokenizer = load_tokenizer(tmp_path / "spm.gguf")
    encoding = tokenizer.encoding("hello world é")
    assert encoding.tokens == ["<s>", "▁hello", "▁wor", "ld", "▁", "<0xC3>", "<0xA9>"]
    assert tokenizer.decode(encoding.ids) == "hello world é"
    assert tokenizer.bos_id == 1 and tokenizer.eos_id == 2


def test_unsupported_architecture_is_one_line(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((10, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(FolderError, match=r"architecture 'gpt2' is not supported.*llama") as e:
        attnlab.from_pretrained(tmp_path / "gpt2.gguf")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_file_is_one_line(tmp_path, model, keep):
    path = write_gguf(tmp_path / "tiny.gguf", model)
    data = path.read_bytes()
    path.write_bytes(data[: max(8, int(len(data) * keep))])
    with pytest.raises(FolderError, match="truncated or corrupt") as e:
        attnlab.from_pretrained(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_metadata_that_does_not_fit_the_tensors_is_named(tmp_path, model):
    """block_count 3 for a file with 2 layers is refused before the model is allocated."""
    path = write_gguf(tmp_path / "tiny.gguf", model, n_layers=3)
    with pytest.raises(FolderError, match=r"blk\.2|layers\.2") as e:
        attnlab.from_pretrained(path)
    assert str(path) in str(e.value)
    with pytest.raises(MissingFileError, match="no such GGUF file"):
        attnlab.from_pretrained(tmp_path / "missing.gguf")
