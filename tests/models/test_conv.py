"""ConvS2S (Gehring et al., 2017): learning, causality, attention, cache, decoding, padding,
presets, config errors."""

from __future__ import annotations

import json

import pytest
import torch

from attnlab.data.batching import collate
from attnlab.generation.beam import beam_search
from attnlab.generation.greedy import greedy_decode
from attnlab.models import build_model
from attnlab.models.conv import PRESETS, ConvS2S, ConvS2SConfig
from attnlab.serialization import WEIGHTS_NAME, load_weights
from attnlab.tasks.translation import encode_pairs, evaluate_pairs, loss_fn, translate
from attnlab.tokenizers import Tokenizer

V = 20
TINY = dict(vocab_size=V, d_model=32, d_hidden=48, n_layers=2, n_decoder_layers=3,
            kernel_size=3, dropout=0.0, max_seq_len=64)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def tiny(seed: int = 0, **overrides) -> ConvS2S:
    torch.manual_seed(seed)
    return ConvS2S(ConvS2SConfig(**{**TINY, **overrides})).eval()


def padded_batch(seed: int = 1, lengths: tuple[int, ...] = (7, 3, 5, 1)):
    """Source ids (B, S) with trailing padding and the matching attention mask (B, S)."""
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    ids = torch.randint(3, V, (len(lengths), S), generator=g)  # (B, S)
    mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    return ids.masked_fill(~mask, 0), mask.long()


def targets(B: int = 4, T: int = 6, seed: int = 2) -> torch.Tensor:
    return torch.randint(3, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_overfits_a_handful_of_pairs():
    model = tiny(dropout=0.1).train()
    pairs = [([5, 6, 7, 2], [8, 9, 2]), ([7, 5, 2], [9, 9, 8, 10, 2]),
             ([11, 12, 13, 14, 2], [15, 2]), ([6, 6, 2], [16, 17, 18, 2])]
    src = torch.zeros(4, 5, dtype=torch.long)
    labels = torch.full((4, 5), -100)
    for row, (s, t) in enumerate(pairs):
        src[row, : len(s)], labels[row, : len(t)] = torch.tensor(s), torch.tensor(t)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):  # ~50 suffice; Adam can spike near step 100 on some CPUs
        loss = model(src, attention_mask=(src != 0).long(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert model(src, attention_mask=(src != 0).long(), labels=labels).loss < 0.05
    out = greedy_decode(model, src, (src != 0).long(), max_new_tokens=6)
    for row, (_, t) in enumerate(pairs):
        assert out[row, : len(t)].tolist() == t


def test_translation_task_helpers_work_unchanged():
    pairs = [("the cat sleeps", "ka miro dormas"), ("the dog eats bread", "ka hundo panok mangas"),
             ("a bird sings", "un vogo kantas"), ("the old cat eats", "ka miro alta mangas")]
    tokenizer = Tokenizer.train_bpe([s for p in pairs for s in p], vocab_size=300, min_frequency=1)
    model = tiny(vocab_size=tokenizer.vocab_size, tie_embeddings=True).train()
    batch = collate(encode_pairs(tokenizer, pairs), tokenizer.pad_id)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = loss_fn(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    references = [t for _, t in pairs]
    assert translate(model, tokenizer, [s for s, _ in pairs], beam_size=1) == references
    assert evaluate_pairs(model, tokenizer, pairs, beam_size=4)["bleu"] == pytest.approx(100.0)


def test_loss_from_labels_equals_explicit_shift():
    model = tiny()
    src, mask = padded_batch()
    labels = targets()
    labels[1, -2:] = -100
    out = model(src, attention_mask=mask, labels=labels)
    dec_in = torch.cat([torch.full((4, 1), 1), labels[:, :-1]], 1).clamp(min=0)  # -100 -> pad
    ref = model(src, dec_in, attention_mask=mask)
    torch.testing.assert_close(out.logits, ref.logits)
    assert out.logits.shape == (4, 6, V) and out.encoder_last_hidden_state.shape == (4, 7, 64)
    assert torch.isfinite(out.loss)


def test_decoder_is_causal():
    model = tiny()
    src, mask = padded_batch()
    tgt = targets(T=8)
    base = model(src, tgt, attention_mask=mask).logits
    for t in (0, 3, 7):
        changed = tgt.clone()
        changed[:, t] = (changed[:, t] + 1 - 3) % (V - 3) + 3
        logits = model(src, changed, attention_mask=mask).logits
        torch.testing.assert_close(logits[:, :t], base[:, :t], rtol=0, atol=0)
        assert not torch.allclose(logits[:, t], base[:, t])


def test_cross_attentions_are_distributions_over_real_source_positions():
    model = tiny()
    src, mask = padded_batch()
    out = model(src, targets(), attention_mask=mask, output_attentions=True)
    assert len(out.cross_attentions) == 3
    for weights in out.cross_attentions:
        assert weights.shape == (4, 1, 6, 7)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, 1, 6))
        assert (weights.masked_select(~mask.bool()[:, None, None, :]) == 0).all()
    assert model(src, targets(), attention_mask=mask).cross_attentions is None


def test_source_padding_does_not_change_outputs():
    model = tiny()
    src, mask = padded_batch()
    tgt = targets()
    batched = model(src, tgt, attention_mask=mask, output_attentions=True)
    for row, length in enumerate(mask.sum(1).tolist()):
        alone = model(src[row : row + 1, :length], tgt[row : row + 1], output_attentions=True)
        torch.testing.assert_close(batched.logits[row], alone.logits[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched.cross_attentions[-1][row, ..., :length],
                                   alone.cross_attentions[-1][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
def test_cached_steps_equal_full_prefix(kernel_size):
    model = tiny(kernel_size=kernel_size)
    src, mask = padded_batch()
    tgt = targets(T=9)
    memory = model.encode(src, mask).last_hidden_state  # (B, S, 2D)
    full = model.decode(tgt, memory, attention_mask=mask).last_hidden_state  # (B, T, D)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, :2], memory, attention_mask=mask, cache=cache)]  # a chunk first
    for t in range(2, 9):
        steps.append(model.decode(tgt[:, t : t + 1], memory, attention_mask=mask, cache=cache))
    assert cache.length == 9
    cached = torch.cat([s.last_hidden_state for s in steps], dim=1)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy_with_and_without_cache(seed):
    model = tiny(seed)
    src, mask = padded_batch(seed)
    greedy = greedy_decode(model, src, mask, max_new_tokens=10)
    assert torch.equal(greedy_decode(model, src, mask, max_new_tokens=10, use_cache=False),
                       greedy)
    beam = beam_search(model, src, mask, beam_size=1, max_new_tokens=10)
    assert torch.equal(beam.sequences, greedy)


@torch.no_grad()
def test_beam_search_cache_follows_reordered_beams():
    model = tiny(3)
    src, mask = padded_batch(3)
    cached = beam_search(model, src, mask, beam_size=3, max_new_tokens=8)
    full = beam_search(model, src, mask, beam_size=3, max_new_tokens=8, use_cache=False)
    assert torch.equal(cached.sequences, full.sequences)
    torch.testing.assert_close(cached.scores, full.scores, rtol=1e-5, atol=1e-5)


def test_encoder_gradient_is_scaled_and_forward_unchanged():
    model = tiny().train()
    src, mask = padded_batch()
    labels = targets()
    model(src, attention_mask=mask, labels=labels).loss.backward()
    scaled = model.encoder.fc2.weight.grad.clone()
    model.zero_grad()
    model.encoder.grad_scale = 1.0
    model(src, attention_mask=mask, labels=labels).loss.backward()
    torch.testing.assert_close(scaled, model.encoder.fc2.weight.grad / 6, rtol=1e-4, atol=1e-7)


def test_paper_initialisation():
    model = tiny(d_model=256, d_hidden=256, vocab_size=2000, dropout=0.2)
    assert model.encoder.tokens.weight[1:].std().item() == pytest.approx(0.1, rel=0.05)
    assert model.encoder.tokens.weight[0].abs().sum() == 0  # padding row
    conv = model.decoder.convs[0].weight  # N(0, sqrt(4 p / (k d)))
    assert conv.std().item() == pytest.approx((4 * 0.8 / (3 * 256)) ** 0.5, rel=0.05)
    assert model.encoder.fc2.weight.std().item() == pytest.approx(256**-0.5, rel=0.05)


def test_tied_embeddings_share_one_table():
    model = tiny(tie_embeddings=True)
    table = model.encoder.tokens.weight
    assert model.decoder.tokens.weight is table and model.lm_head.weight is table
    untied = tiny()
    assert untied.num_parameters() - model.num_parameters() == 2 * V * 32


def test_presets_sizes():
    counts = {}
    for name, (values, source) in PRESETS.items():
        assert source
        vocab = {} if name.endswith("-tiny") else {"vocab_size": 4000}
        with torch.device("meta"):
            counts[name] = ConvS2S(ConvS2SConfig(**{**values, **vocab})).num_parameters()
    assert counts["convs2s-tiny"] < 1_000_000
    for ours, theirs in (("convs2s-mini", "transformer-mini"),
                         ("convs2s-small", "transformer-small")):
        with torch.device("meta"):
            reference = build_model(theirs, vocab_size=4000).num_parameters()
        assert abs(counts[ours] - reference) / reference < 0.10, (ours, counts[ours], reference)


def test_save_pretrained_writes_config_and_weights(tmp_path):
    # attnlab.from_pretrained needs the presets registered in attnlab.models; rebuild by hand.
    model = tiny(tie_embeddings=True)
    model.save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    assert values.pop("model_type") == "convs2s"
    values.pop("attnlab_version")
    back = ConvS2S(ConvS2SConfig(**values))
    load_weights(back, tmp_path / WEIGHTS_NAME)
    assert back.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(kernel_size=0), "kernel_size must be a positive integer, got 0"),
    (dict(d_hidden=2.5), "d_hidden must be a positive integer, got 2.5"),
    (dict(n_decoder_layers=-1), "n_decoder_layers must be a positive integer, got -1"),
    (dict(dropout=1.0), r"dropout must be a number in \[0, 1\), got 1.0"),
    (dict(eos_token_id=20), r"eos_token_id must be an int in \[0, vocab_size=20\), got 20"),
    (dict(tie_embeddings="yes"), "tie_embeddings must be a bool, got 'yes'"),
])
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        ConvS2SConfig(**{**TINY, **overrides})


def test_bad_inputs_are_named():
    model = tiny()
    src, mask = padded_batch()
    with pytest.raises(ValueError,
                       match=r"attention_mask must have shape \(\d+, \d+\) \(batch, length\)"):
        model(src, targets(), attention_mask=mask[:, :3])
    with pytest.raises(ValueError, match="memory must be encode"):
        model.decode(targets(), torch.zeros(4, 7, 32))
    with pytest.raises(ValueError, match="pass decoder_input_ids, or labels"):
        model(src)
    with pytest.raises(ValueError, match="exceeds max_seq_len=64"):
        model(src, torch.full((4, 65), 3))
    assert ConvS2SConfig(**TINY).decoder_start_token_id == 1
    assert ConvS2SConfig(n_layers=4).n_decoder_layers == 4
