"""Attention maps of saved model folders: they equal the weights the model returns, with the
tokens the family reads on the axes; fused kernel = reference kernel; rollout by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer
from attnlab.viz.extract import (
    encode_text,
    extract_maps,
    load_model_and_tokenizer,
    maps_from_folder,
)
from attnlab.viz.maps import AttentionView
from attnlab.viz.rollout import attention_rollout, rollout_view

torch.set_num_threads(1)

LINES = ["the apple was juicy and red", "apple stock crashed on monday",
         "the farmer sells red apples", "stock prices fell again today"] * 4
TEXT = "the apple was juicy"
TARGET = "apple stock crashed"
DECODER_ONLY = ["gpt2-tiny", "llama-tiny", "mixtral-tiny"]
ENCODER_DECODER = ["transformer-tiny", "t5-tiny", "rnn-bahdanau-tiny", "rnn-luong-tiny",
                   "convs2s-tiny"]


def save_folder(preset: str, directory: Path, **overrides) -> Path:
    """A tiny random model of `preset` and a tokenizer trained here, saved as a model folder:
    attnlab's translation BPE for the encoder-decoders attnlab trains, a byte-level BPE
    otherwise (BERT's with [CLS] / [SEP], as `attnlab train mlm` writes it; T5's with its
    <pad>=0, </s>=1, <unk>=2)."""
    torch.manual_seed(0)
    model = build_model(preset, **overrides)
    model.save_pretrained(directory)
    if preset in ENCODER_DECODER and preset != "t5-tiny":
        Tokenizer.train_bpe(LINES, vocab_size=300, min_frequency=1).save(directory)
    else:
        specials = {"bert-tiny": ["[PAD]", "[MASK]", "[CLS]", "[SEP]"],
                    "t5-tiny": ["<pad>", "</s>", "<unk>"]}.get(preset, ["<eos>"])
        Tokenizer.train_byte_level(LINES, 300, specials).save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {p: save_folder(p, root / p) for p in [*DECODER_ONLY, "bert-tiny", *ENCODER_DECODER]}


def stack(weights) -> torch.Tensor:
    return torch.stack([w[0] for w in weights]).float()  # (L, H, T, S)


@pytest.mark.parametrize("preset", [*DECODER_ONLY, "bert-tiny"])
def test_single_stack_maps_equal_the_models_weights(folders, preset):
    model, tokenizer = load_model_and_tokenizer(folders[preset])
    maps = extract_maps(model, tokenizer, TEXT)
    ids = tokenizer.encoding(TEXT).ids
    if preset == "bert-tiny":
        ids = [tokenizer.token_to_id("[CLS]"), *ids, tokenizer.token_to_id("[SEP]")]
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    (view,) = maps.views
    assert view.kind == "self" and maps.family == model.config.model_type
    torch.testing.assert_close(view.weights, stack(out.attentions))
    assert len(view.query_tokens) == len(ids) and view.query_tokens == view.key_tokens
    assert "▁apple" in view.query_tokens  # byte-level "Ġapple" shown as text
    if preset == "bert-tiny":
        assert (view.query_tokens[0], view.query_tokens[-1]) == ("[CLS]", "[SEP]")
    torch.testing.assert_close(view.weights.sum(-1), torch.ones(view.weights.shape[:-1]))


@pytest.mark.parametrize("preset", ENCODER_DECODER)
def test_encoder_decoder_maps_equal_the_models_weights(folders, preset):
    model, tokenizer = load_model_and_tokenizer(folders[preset])
    maps = extract_maps(model, tokenizer, TEXT, TARGET)
    eos, start = model.config.eos_token_id, model.config.decoder_start_token_id
    src = [*tokenizer.encoding(TEXT).ids, eos]
    tgt = [*tokenizer.encoding(TARGET).ids, eos]
    with torch.no_grad():
        out = model(torch.tensor([src]), torch.tensor([[start, *tgt[:-1]]]),
                    output_attentions=True)
    expected = {"encoder self-attention": out.encoder_attentions,
                "decoder self-attention": out.decoder_attentions,
                "cross-attention": out.cross_attentions}
    expected = {name: stack(w) for name, w in expected.items() if w}
    assert [v.name for v in maps.views] == list(expected)
    for view in maps.views:
        torch.testing.assert_close(view.weights, expected[view.name])
    cross = maps.view("cross-attention")
    assert cross.kind == "cross"
    assert cross.key_tokens[-1] == "</s>" and cross.query_tokens[-1] == "</s>"
    assert len(cross.key_tokens) == len(src) and len(cross.query_tokens) == len(tgt)
    if "decoder self-attention" in expected:
        decoder = maps.view("decoder self-attention")
        assert decoder.query_tokens[1:] == cross.query_tokens[:-1]  # reads what it predicted


def test_encoder_decoder_without_target_uses_its_greedy_output(folders):
    maps = maps_from_folder(folders["transformer-tiny"], TEXT)
    cross = maps.view("cross-attention")
    assert cross.query_tokens[-1] == "</s>" and cross.weights.size(2) >= 1


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny", "bert-tiny", "transformer-tiny"])
def test_fused_kernel_maps_equal_the_reference_kernels(tmp_path, folders, preset):
    """Models on the fused kernel return weights recomputed with the reference math."""
    fused, tokenizer = load_model_and_tokenizer(folders[preset])
    assert fused.config.kernel == "sdpa"
    reference = build_model(preset, kernel="reference").eval()
    reference.load_state_dict(fused.state_dict())
    target = TARGET if preset == "transformer-tiny" else None
    a = extract_maps(fused, tokenizer, TEXT, target)
    b = extract_maps(reference, tokenizer, TEXT, target)
    for view_a, view_b in zip(a.views, b.views, strict=True):
        torch.testing.assert_close(view_a.weights, view_b.weights, atol=1e-5, rtol=1e-4)


def test_encode_text_frames_sources_with_eos(folders):
    model, tokenizer = load_model_and_tokenizer(folders["t5-tiny"])
    encoded = encode_text(model, tokenizer, TEXT)
    assert encoded.ids[-1] == model.config.eos_token_id
    assert len(encoded.tokens) == len(encoded.ids)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_model_and_tokenizer(tmp_path / "nowhere")


def test_missing_tokenizer_is_named(tmp_path):
    build_model("gpt2-tiny").save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_model_and_tokenizer(tmp_path)


def test_target_for_a_decoder_only_model_is_refused(folders):
    with pytest.raises(ValueError, match="--target is for encoder-decoder.*gpt2"):
        maps_from_folder(folders["gpt2-tiny"], TEXT, TARGET)


def test_empty_text_is_refused(folders):
    with pytest.raises(ValueError, match="--text is empty"):
        maps_from_folder(folders["gpt2-tiny"], "   ")


def test_too_long_text_names_max_seq_len(folders):
    with pytest.raises(ValueError, match="max_seq_len=128"):
        maps_from_folder(folders["gpt2-tiny"], "apple " * 200)


def test_rollout_of_a_hand_made_two_layer_example():
    # Layer 1: both heads [[1, 0], [.5, .5]]      -> 0.5 A + 0.5 I = [[1, 0], [.25, .75]]
    # Layer 2: heads [[0, 1], [0, 1]], [[1, 0], [0, 1]] -> mean [[.5, .5], [0, 1]]
    #                                              -> 0.5 A + 0.5 I = [[.75, .25], [0, 1]]
    # Rollout after 2 layers = A'_2 @ A'_1 = [[.8125, .1875], [.25, .75]]
    layer1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).expand(2, 2, 2)
    layer2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    rolled = attention_rollout(torch.stack([layer1, layer2]))  # (2, 2, 2)
    torch.testing.assert_close(rolled[0], torch.tensor([[1.0, 0.0], [0.25, 0.75]]))
    torch.testing.assert_close(rolled[1], torch.tensor([[0.8125, 0.1875], [0.25, 0.75]]))


def test_rollout_renormalises_rows_and_keeps_masked_queries_on_themselves():
    # Row 0 sums to 0.5 (not a distribution), row 1 is a masked query (all zeros).
    weights = torch.tensor([[[[0.25, 0.25], [0.0, 0.0]]]])  # (1, 1, 2, 2)
    rolled = attention_rollout(weights)[0]
    # row 0: 0.5 * [.25, .25] + 0.5 * [1, 0] = [.625, .125] -> / .75
    torch.testing.assert_close(rolled, torch.tensor([[0.625 / 0.75, 0.125 / 0.75], [0.0, 1.0]]))


def test_rollout_rows_are_distributions_on_a_real_model(folders):
    maps = maps_from_folder(folders["bert-tiny"], TEXT)
    rolled = rollout_view(maps.views[0])
    assert rolled.n_heads == 1 and rolled.n_layers == maps.views[0].n_layers
    torch.testing.assert_close(rolled.weights.sum(-1), torch.ones(rolled.weights.shape[:-1]))


def test_rollout_refuses_cross_attention_and_bad_shapes():
    view = AttentionView("cross-attention", "cross", ("a",), ("b", "c"),
                         torch.full((1, 1, 1, 2), 0.5))
    with pytest.raises(ValueError, match="self-attention"):
        rollout_view(view)
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(torch.ones(1, 1, 2, 2) / 2, residual=1.5)


def test_tokenizer_post_processor_frames_bert_once(tmp_path):
    """A Hugging Face BERT tokenizer.json adds [CLS] .. [SEP] itself: not added twice."""
    from tokenizers import processors

    tokenizer = Tokenizer.train_byte_level(LINES, 300, ["[PAD]", "[MASK]", "[CLS]", "[SEP]"])
    tokenizer.backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    model = build_model("bert-tiny").eval()
    encoded = encode_text(model, tokenizer, TEXT)
    assert encoded.tokens.count("[CLS]") == 1 and encoded.tokens.count("[SEP]") == 1
    assert encoded.ids == [2, *tokenizer.encode(TEXT), 3]


def test_byte_level_tokens_read_as_text():
    from attnlab.viz.extract import readable

    tokenizer = Tokenizer.train_byte_level(["a line\nwith café"], 270, ["<eos>"])
    tokens = [readable(tokenizer, t) for t in tokenizer.encoding("a line\nwith café").tokens]
    assert "".join(tokens) == "a▁line\\nwith▁café"
