"""Head analysis: scores on hand-written weights, probes, planted heads in real models, the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.nn.attention.multi_head import MultiHeadAttention
from attnlab.tokenizers import Tokenizer
from attnlab.viz.heads import (
    analyse_heads,
    best_offset,
    diagonal_score,
    duplicate_token_score,
    first_token_score,
    induction_score,
    model_attentions,
    offset_scores,
    previous_token_score,
    probe_ids,
    score_self,
)

torch.set_num_threads(1)


def one_hot_rows(T: int, S: int, key_of: dict[int, int]) -> torch.Tensor:
    """(T, S) weights: query i puts all its weight on key_of[i], else on itself (or key 0)."""
    weights = torch.zeros(T, S)
    for i in range(T):
        weights[i, key_of.get(i, min(i, S - 1))] = 1.0
    return weights


def causal_uniform(T: int) -> torch.Tensor:
    weights = torch.tril(torch.ones(T, T))
    return weights / weights.sum(-1, keepdim=True)  # (T, T)


# ------------------------------------------------------------------ scores on written weights


def test_previous_token_pattern_scores_one_on_previous_and_offset_one():
    T = 8
    weights = one_hot_rows(T, T, {i: i - 1 for i in range(1, T)})
    assert previous_token_score(weights) == pytest.approx(1.0)
    assert first_token_score(weights) == pytest.approx(1 / (T - 1))  # only query 1 -> key 0
    score, offset = best_offset(weights)
    assert score == pytest.approx(1.0) and offset == 1


def test_sink_pattern_scores_one_on_first_token_only():
    T = 10
    weights = one_hot_rows(T, T, {i: 0 for i in range(T)})
    assert first_token_score(weights) == pytest.approx(1.0)
    assert previous_token_score(weights) == pytest.approx(1 / (T - 1))
    assert best_offset(weights)[0] <= 1 / (T - T // 2) + 1e-6  # no fixed offset explains it


def test_uniform_causal_attention_is_chance_on_every_behaviour():
    T = 16
    weights = causal_uniform(T)
    chance = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)
    assert previous_token_score(weights) == pytest.approx(chance)
    assert first_token_score(weights) == pytest.approx(chance)
    scores = score_self(weights[None, None], weights[None, None])
    assert all(float(value.max()) < 0.25 for name, value in scores.items()
               if name != "offset_value")


def test_negative_offset_found_in_bidirectional_attention():
    T = 12
    weights = one_hot_rows(T, T, {i: i + 2 for i in range(T - 2)})
    score, offset = best_offset(weights)
    assert offset == -2 and score == pytest.approx(1.0)
    by_offset = offset_scores(weights, max_offset=3)  # d = -3 .. 3
    assert by_offset.shape == (7,) and by_offset[3 - 2] == pytest.approx(1.0)


def test_induction_and_duplicate_patterns_on_a_repeated_sequence():
    n = 6
    T = 2 * n
    induction = one_hot_rows(T, T, {n + j: j + 1 for j in range(n - 1)})
    duplicate = one_hot_rows(T, T, {n + j: j for j in range(n)})
    assert induction_score(induction, n) == pytest.approx(1.0)
    assert duplicate_token_score(induction, n) == pytest.approx(0.0)
    assert duplicate_token_score(duplicate, n) == pytest.approx(1.0)
    assert induction_score(duplicate, n) == pytest.approx(0.0)


def test_diagonal_score_follows_the_scaled_diagonal():
    eye = torch.eye(6)
    assert diagonal_score(eye) == pytest.approx(1.0)
    assert diagonal_score(eye.flip(-1), radius=0) == pytest.approx(0.0)
    T, S = 4, 10  # target shorter than source: the diagonal runs 0, 3, 6, 9
    stretched = one_hot_rows(T, S, {i: 3 * i for i in range(T)})
    assert diagonal_score(stretched, radius=0) == pytest.approx(1.0)
    uniform = torch.full((T, S), 1 / S)
    assert diagonal_score(uniform, radius=1) < 0.35


def test_scores_keep_leading_dims():
    weights = causal_uniform(8).expand(3, 2, 8, 8)  # (L, H, T, T)
    assert previous_token_score(weights).shape == (3, 2)
    assert diagonal_score(weights).shape == (3, 2)
    assert score_self(weights, weights)["offset_value"].shape == (3, 2)


def test_bad_weights_raise_clear_errors():
    with pytest.raises(ValueError, match="T == S"):
        previous_token_score(torch.rand(4, 5))
    with pytest.raises(ValueError, match="period"):
        induction_score(torch.rand(8, 8), 3)
    with pytest.raises(ValueError, match="at least 2 queries"):
        first_token_score(torch.rand(1, 5))
    with pytest.raises(ValueError, match="radius"):
        diagonal_score(torch.rand(4, 4), radius=-1)


# ------------------------------------------------------------------------------------- probes


def test_probe_ids_are_seeded_avoid_specials_and_repeat_distinct_halves():
    a = probe_ids(50, 4, 20, repeat=True, seed=3, exclude={0, 1, 2})
    assert torch.equal(a, probe_ids(50, 4, 20, repeat=True, seed=3, exclude={0, 1, 2}))
    assert torch.equal(a[:, :10], a[:, 10:])
    assert all(len(set(row[:10].tolist())) == 10 for row in a)
    plain = probe_ids(50, 4, 20, repeat=False, seed=3, exclude={0, 1, 2})
    assert plain.shape == (4, 20) and not set(plain.flatten().tolist()) & {0, 1, 2}
    with pytest.raises(ValueError, match="distinct ids"):
        probe_ids(8, 1, 20, repeat=True, seed=0)


@pytest.mark.parametrize("preset", ["gpt2-tiny", "bert-tiny", "transformer-tiny"])
def test_probed_maps_equal_the_weights_the_model_returns(preset):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    ids = probe_ids(model.config.vocab_size, 3, 10, repeat=False, seed=0, exclude={0, 1, 2})
    views = model_attentions(model, ids)
    with torch.no_grad():
        if model.model_kind == "encoder-decoder":
            start = torch.full_like(ids[:, :1], model.config.decoder_start_token_id)
            out = model(ids, decoder_input_ids=torch.cat([start, ids[:, :-1]], 1),
                        output_attentions=True)
            expected = {"encoder self-attention": out.encoder_attentions,
                        "decoder self-attention": out.decoder_attentions,
                        "cross-attention": out.cross_attentions}
        else:
            expected = {"self-attention": model(ids, output_attentions=True).attentions}
    assert set(views) == set(expected)
    for name, layers in expected.items():
        torch.testing.assert_close(views[name], torch.stack(layers).mean(1))


# ------------------------------------------------------------------------ planted behaviours


def plant_positional_heads(model: nn.Module) -> None:
    """GPT-2 layer 0: head 0 attends to the previous token, head 1 to position 0.

    Token embeddings are zeroed, so the residual stream is the position embedding alone. Each
    position vector has zero mean and the same norm, so the first LayerNorm only rescales it.
    Dims 0..15: (cos, sin) of 8 frequencies; 16..31 their negatives (zero mean); 32, 33: a flag
    (+1, -1) at position 0 and (-1, +1) elsewhere.
    """
    c = model.config
    P = c.max_seq_len
    pos = torch.arange(P, dtype=torch.float32)
    omega = math.pi * 2.0 ** -torch.arange(8, dtype=torch.float32)  # (8,)
    angles = pos[:, None] * omega  # (P, 8)
    waves = torch.stack([angles.cos(), angles.sin()], dim=-1).flatten(1)  # (P, 16)
    flag = torch.where(pos == 0, 1.0, -1.0)[:, None] * torch.tensor([1.0, -1.0])  # (P, 2)
    embedding = torch.zeros(P, c.d_model)
    embedding[:, :16], embedding[:, 16:32], embedding[:, 32:34] = waves, -waves, flag
    rotate = torch.zeros(16, 16)  # (cos wi, sin wi) -> (cos w(i-1), sin w(i-1))
    for f, w in enumerate(omega.tolist()):
        cos, sin = math.cos(w), math.sin(w)
        rotate[2 * f:2 * f + 2, 2 * f:2 * f + 2] = torch.tensor([[cos, sin], [-sin, cos]])
    layer = model.decoder.layers[0]
    attention = layer.self_attn
    with torch.no_grad():
        model.embed_tokens.weight.zero_()
        model.position.embedding.weight.copy_(embedding)
        for q_or_k in (attention.q_proj, attention.k_proj):
            q_or_k.weight[:32].zero_()
            q_or_k.bias[:32].zero_()
        attention.q_proj.weight[:16, :16] = 10.0 * rotate  # head 0 queries: position i - 1
        attention.k_proj.weight[:16, :16] = torch.eye(16)  # head 0 keys: position j
        attention.q_proj.bias[16] = 20.0  # head 1 asks the same question everywhere...
        attention.k_proj.weight[16, 32], attention.k_proj.weight[16, 33] = 1.0, -1.0  # ...pos 0


def test_planted_previous_token_and_sink_heads_in_gpt2():
    torch.manual_seed(0)
    model = build_model("gpt2-tiny", max_seq_len=64, dropout=0.0, attention_dropout=0.0).eval()
    plant_positional_heads(model)
    result = analyse_heads(model, batch=4, length=32, seed=1)
    scores = result.scores["self-attention"]
    assert scores["previous_token"][0, 0] > 0.95
    assert scores["offset"][0, 0] > 0.95 and scores["offset_value"][0, 0] == 1
    assert scores["first_token"][0, 1] > 0.95
    for name in ("first_token", "induction", "duplicate_token"):
        assert scores[name][0, 0] < 0.2, name
    for name in ("previous_token", "induction", "duplicate_token", "offset"):
        assert scores[name][0, 1] < 0.3, name
    assert result.top_heads("self-attention", "previous_token", 1)[0][:2] == (0, 0)
    assert result.top_heads("self-attention", "first_token", 1)[0][:2] == (0, 1)


@dataclass(frozen=True)
class ToyConfig:
    vocab_size: int = 24
    max_seq_len: int = 32


class InductionLM(nn.Module):
    """Two attnlab attention layers wired as an induction circuit (Olsson et al. 2022):
    layer 0 copies the previous token into its own slot, layer 1 matches the current token
    against that slot, so it attends to the token after the earlier occurrence.
    Residual dims: [0, V) one-hot token, [V, V + 16) position waves, [V + 16, 2V + 16) the
    previous token."""

    model_kind = "decoder-only"

    def __init__(self) -> None:
        super().__init__()
        self.config = c = ToyConfig()
        V = c.vocab_size
        D = 2 * V + 16
        self.previous = MultiHeadAttention(D, 1, head_dim=V, kernel="reference")
        self.induction = MultiHeadAttention(D, 1, head_dim=V, kernel="reference")
        pos = torch.arange(c.max_seq_len, dtype=torch.float32)
        omega = math.pi * 2.0 ** -torch.arange(8, dtype=torch.float32)
        angles = pos[:, None] * omega  # (P, 8)
        self.register_buffer("waves", torch.stack([angles.cos(), angles.sin()], -1).flatten(1))
        rotate = torch.zeros(16, 16)
        for f, w in enumerate(omega.tolist()):
            cos, sin = math.cos(w), math.sin(w)
            rotate[2 * f:2 * f + 2, 2 * f:2 * f + 2] = torch.tensor([[cos, sin], [-sin, cos]])
        with torch.no_grad():
            for module in (self.previous, self.induction):
                for p in module.parameters():
                    p.zero_()
            self.previous.q_proj.weight[:16, V:V + 16] = 10.0 * rotate
            self.previous.k_proj.weight[:16, V:V + 16] = torch.eye(16)
            self.previous.v_proj.weight[:, :V] = torch.eye(V)
            self.previous.out_proj.weight[V + 16:, :] = torch.eye(V)
            self.induction.q_proj.weight[:, :V] = 30.0 * torch.eye(V)
            self.induction.k_proj.weight[:, V + 16:] = torch.eye(V)

    def forward(self, input_ids, output_attentions=False):
        V = self.config.vocab_size
        B, T = input_ids.shape
        x = torch.cat([nn.functional.one_hot(input_ids, V).float(),
                       self.waves[:T].expand(B, T, 16),
                       torch.zeros(B, T, V)], dim=-1)  # (B, T, D)
        first = self.previous(x, causal=True, need_weights=True)
        x = x + first.output
        second = self.induction(x, causal=True, need_weights=True)
        return SimpleNamespace(attentions=(first.weights, second.weights))


def test_planted_induction_circuit_scores_near_one_on_induction():
    result = analyse_heads(InductionLM(), batch=4, length=32, seed=0)
    scores = result.scores["self-attention"]  # (2 layers, 1 head)
    assert scores["previous_token"][0, 0] > 0.95
    assert scores["induction"][1, 0] > 0.9
    assert scores["induction"][0, 0] < 0.1 and scores["previous_token"][1, 0] < 0.3
    assert scores["duplicate_token"][1, 0] < 0.1


# -------------------------------------------------------------------------------------- CLI


def test_cli_on_a_preset_writes_scores_and_png(tmp_path, capsys):
    out = tmp_path / "heads"
    assert main(["heads", "--preset", "gpt2-tiny", "--out", str(out), "--length", "16",
                 "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert "previous-token" in printed and "induction" in printed and "L1H1" in printed
    assert "L0H" not in printed and "H0 " not in printed  # numbered from 1, as viz does
    scores = json.loads((out / "scores.json").read_text())
    values = scores["views"]["self-attention"]["previous_token"]
    assert len(values) == 2 and len(values[0]) == 4
    assert scores["probe"]["length"] == 16
    assert scores["numbering"].startswith("layers and heads are numbered from 1: L1H1 is the "
                                          "first head of the first layer (row 0, column 0")
    assert (out / "heads.png").stat().st_size > 1000


def test_cli_on_a_saved_encoder_decoder_folder(tmp_path, capsys):
    model = build_model("transformer-tiny")
    folder = model.save_pretrained(tmp_path / "model")
    tokenizer = Tokenizer.train_bpe(["a few words to learn from ."] * 4, vocab_size=300)
    tokenizer.backend.add_special_tokens(["<mask>"])
    tokenizer.save(folder)
    mask, byte = tokenizer.token_to_id("<mask>"), tokenizer.token_to_id("<0x41>")
    assert tokenizer.special_token_ids() == {0, 1, 2, 3, mask}  # byte tokens carry text
    assert main(["heads", "--model", str(folder), "--length", "12", "--batch", "2"]) == 0
    assert "cross-attention" in capsys.readouterr().out
    scores = json.loads((folder / "heads" / "scores.json").read_text())
    assert set(scores["views"]) == {"encoder self-attention", "decoder self-attention",
                                    "cross-attention"}
    assert set(scores["views"]["cross-attention"]) == {"diagonal", "first_token"}
    assert mask in scores["probe"]["excluded_ids"] and byte not in scores["probe"]["excluded_ids"]


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["heads", "--preset", "gpt2-tiny", "--length", "3",
                 "--out", str(tmp_path)]) == 2
    assert "length" in capsys.readouterr().err
    assert main(["heads", "--model", str(tmp_path / "missing")]) == 2


def test_chance_floor_is_uniform_attention_over_what_the_model_sees():
    torch.manual_seed(0)
    result = analyse_heads(build_model("transformer-tiny").eval(), batch=2, length=16)
    causal = sum(1 / (i + 1) for i in range(1, 16)) / 15
    assert result.chance["decoder self-attention"]["previous_token"] == pytest.approx(causal,
                                                                                      abs=1e-4)
    assert result.chance["encoder self-attention"]["previous_token"] == pytest.approx(1 / 16)
    assert result.chance["cross-attention"]["diagonal"] < 0.25
