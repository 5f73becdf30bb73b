"""Context-aware embeddings: hidden states read by hooks equal what the models compute, words
are found by character span, causality and bidirectionality show in the similarities, and the
`attnlab embed-compare` command runs end to end."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer
from attnlab.tokenizers import Tokenizer as TranslationTokenizer
from attnlab.viz.embeddings import (
    compare_contexts,
    find_word,
    frame_context,
    hidden_states,
    plot_comparison,
    transformer_stack,
)

torch.set_num_threads(1)

LINES = ["the apple was juicy and sweet", "apple stock crashed today", "my apple is red",
         "the bank of the river", "the bank raised rates", "we ate a pineapple"] * 10


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train_byte_level(LINES, 300, ["[PAD]", "[MASK]", "[CLS]", "[SEP]"])


def model(name: str, **overrides):
    torch.manual_seed(0)
    return build_model(name, **overrides).eval()


def ids_of(m, tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([frame_context(m, tokenizer, text).ids])  # (1, T)


def test_bert_states_are_the_embeddings_and_the_encoder_output(tokenizer):
    m = model("bert-tiny")
    ids = ids_of(m, tokenizer, "the apple was juicy")
    states = hidden_states(m, ids)  # (L + 1, 1, T, D)
    assert states.shape == (m.config.n_layers + 1, 1, ids.size(1), m.config.d_model)
    with torch.no_grad():
        out = m(ids)
        T = ids.size(1)
        embedded = m.embed_norm(m.embed_tokens(ids) + m.position(torch.arange(T))
                                + m.token_type(torch.zeros_like(ids)))  # (1, T, D)
        first_layer = m.encoder.layers[0](embedded)[0]  # (1, T, D)
    torch.testing.assert_close(states[0], embedded)
    torch.testing.assert_close(states[1], first_layer)
    torch.testing.assert_close(states[-1], out.last_hidden_state)
    stack = transformer_stack(m)
    assert not stack._forward_hooks and not stack._forward_pre_hooks
    assert not any(layer._forward_hooks for layer in stack.layers)


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_decoder_last_state_is_after_the_final_norm(tokenizer, name):
    m = model(name)
    ids = ids_of(m, tokenizer, "the bank raised rates")
    states = hidden_states(m, ids)
    with torch.no_grad():
        logits = m(ids).logits  # (1, T, V)
        torch.testing.assert_close(m.lm_head(states[-1]), logits)
        torch.testing.assert_close(states[0], m.embed(ids, torch.arange(ids.size(1))))


def test_translation_encoder_states():
    translation_tokenizer = TranslationTokenizer.train_bpe(LINES, vocab_size=300)
    m = model("transformer-tiny")
    context = frame_context(m, translation_tokenizer, "the apple was juicy")
    assert context.ids[-1] == m.config.eos_token_id  # sources end in </s>, as in training
    ids = torch.tensor([context.ids])
    states = hidden_states(m, ids)
    with torch.no_grad():
        torch.testing.assert_close(states[0], m.embed(ids))
        torch.testing.assert_close(states[-1], m.encode(ids).last_hidden_state)
    result = compare_contexts(m, translation_tokenizer, "apple",
                              ["the apple was juicy", "Apple stock crashed"])
    assert result.similarity.shape == (1, m.config.n_layers + 1)


def test_find_word_by_character_span(tokenizer):
    m = model("bert-tiny")
    context = frame_context(m, tokenizer, "We ate a pineapple, then an APPLE.")
    indices = find_word("apple", context)
    assert "".join(context.tokens[i] for i in indices).strip("▁").lower() == "apple"
    assert min(indices) > 6  # the whole word, not the tail of "pineapple"
    assert context.tokens[0] == "[CLS]" and context.tokens[-1] == "[SEP]"
    with pytest.raises(ValueError, match="'banana' not found in context 'the apple'.*tokens"):
        find_word("banana", frame_context(m, tokenizer, "the apple"))


def test_causal_model_cannot_see_the_future(tokenizer):
    m = model("gpt2-tiny", init_std=0.5)
    same_prefix = compare_contexts(m, tokenizer, "apple",
                                   ["the apple was juicy", "the apple stock crashed"])
    torch.testing.assert_close(same_prefix.similarity, torch.ones_like(same_prefix.similarity))
    other_prefix = compare_contexts(m, tokenizer, "apple", ["the apple is", "my apple is"])
    assert abs(float(other_prefix.similarity[0, 0]) - 1.0) < 1e-5  # same token and position
    assert float(other_prefix.similarity[0, -1]) < 0.999  # layers mix in the other prefix


def test_bidirectional_model_sees_the_following_words(tokenizer):
    m = model("bert-tiny", init_std=0.5)
    result = compare_contexts(m, tokenizer, "apple",
                              ["the apple was juicy", "the apple stock crashed"], control="the")
    assert abs(float(result.similarity[0, 0]) - 1.0) < 1e-5
    assert float(result.similarity[0, -1]) < 0.999
    assert result.control_similarity is not None and result.control_similarity.shape == (1, 3)
    assert result.layers == ("embeddings", "layer 1", "layer 2")


def test_three_contexts_give_every_pair_and_a_plot(tokenizer, tmp_path):
    m = model("bert-tiny")
    result = compare_contexts(m, tokenizer, "apple",
                              ["the apple was juicy", "my apple is red", "apple stock crashed"])
    assert result.pairs == ((0, 1), (0, 2), (1, 2)) and result.similarity.shape == (3, 3)
    assert "apple 1~3" in result.table()
    path = plot_comparison(result, tmp_path / "sim.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_rnn_is_refused_with_its_family(tokenizer):
    m = model("rnn-bahdanau-tiny")
    with pytest.raises(ValueError, match="needs Transformer layers"):
        compare_contexts(m, tokenizer, "apple", ["the apple", "my apple"])


@pytest.fixture(scope="module")
def bert_folder(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    model("bert-tiny").save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_cli_end_to_end(bert_folder, tmp_path, capsys):
    out = tmp_path / "embed"
    assert main(["embed-compare", "--model", str(bert_folder), "--word", "apple",
                 "--context", "the apple was juicy", "--context", "apple stock crashed the",
                 "--control", "the", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "apple 1~2" in printed and "the 1~2" in printed and "layer 2" in printed
    assert (out / "embed_compare.png").is_file()
    saved = json.loads((out / "embed_compare.json").read_text())
    assert saved["word"] == "apple" and len(saved["similarity"][0]) == 3
    assert saved["control"] == "the"


def test_cli_errors_name_the_problem(bert_folder, tmp_path, capsys):
    base = ["embed-compare", "--model", str(bert_folder), "--out", str(tmp_path)]
    assert main([*base, "--word", "pear", "--context", "the apple", "--context", "my apple"]) == 2
    assert "'pear' not found" in capsys.readouterr().err
    assert main([*base, "--word", "apple", "--context", "the apple"]) == 2
    assert "at least twice" in capsys.readouterr().err
