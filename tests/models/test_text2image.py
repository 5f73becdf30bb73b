"""The DALL-E-style decoder: cached decoding equals the full forward under every layout, sampling
is seeded and yields only image codes, the weighted loss equals a hand computation, an image
token's logits never depend on a later token, and a tiny model overfits captioned code grids."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.models.text2image import TextToImage, TextToImageConfig
from attnlab.nn.image_masks import MODEL_LAYOUTS

TEXT_VOCAB, TEXT_LEN, CODES, GRID = 40, 5, 12, 3


def tiny(layout: str = "dalle", **overrides) -> TextToImage:
    torch.manual_seed(0)
    values = dict(text_vocab_size=TEXT_VOCAB, text_len=TEXT_LEN, image_vocab_size=CODES,
                  grid=GRID, d_model=32, n_heads=4, n_layers=4, d_ff=64, dropout=0.0,
                  attention_layout=layout)
    return TextToImage(TextToImageConfig(**{**values, **overrides})).eval()


def sequences(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(3, TEXT_VOCAB, (batch, TEXT_LEN), generator=g)
    text[:, -1] = 2  # a pad at the end of the caption
    image = TEXT_VOCAB + torch.randint(0, CODES, (batch, GRID * GRID), generator=g)
    return torch.cat([text, image], dim=1)  # (B, L)


@pytest.mark.parametrize("layout", MODEL_LAYOUTS)
def test_cached_incremental_forward_equals_the_full_forward(layout):
    model, seqs = tiny(layout), sequences()
    with torch.no_grad():
        full = model(seqs).logits  # (B, L, V)
        for max_length in (None, seqs.size(1)):  # growing and preallocated caches
            cache = model.new_cache(max_length)
            parts = [model(seqs[:, :TEXT_LEN + 2], cache=cache).logits]
            for t in range(TEXT_LEN + 2, seqs.size(1)):
                parts.append(model(seqs[:, t:t + 1], cache=cache).logits)
            torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", MODEL_LAYOUTS)
def test_no_image_logit_depends_on_a_later_token(layout):
    model, seqs = tiny(layout), sequences(1)
    with torch.no_grad():
        before = model(seqs).logits
        for t in range(TEXT_LEN, seqs.size(1)):
            changed = seqs.clone()
            changed[0, t] = TEXT_VOCAB + (int(seqs[0, t]) - TEXT_VOCAB + 1) % CODES
            after = model(changed).logits
            torch.testing.assert_close(after[:, :t], before[:, :t])  # positions before t
            assert not torch.allclose(after[:, t], before[:, t])  # t itself sees its token


def test_a_sparse_layout_ignores_what_its_mask_hides():
    """Row attention in every layer of a 1-layer model: the first image token of a row does not
    see the row two above (beyond its band), the dense model does."""
    seqs = sequences(1)
    query = TEXT_LEN + 2 * GRID  # row 2, column 0
    changed = seqs.clone()
    changed[0, TEXT_LEN + 0] = TEXT_VOCAB + (int(seqs[0, TEXT_LEN]) - TEXT_VOCAB + 1) % CODES
    for layout, same in (("row", True), ("dense", False)):
        model = tiny(layout, n_layers=1)
        with torch.no_grad():
            a, b = model(seqs).logits[0, query], model(changed).logits[0, query]
        assert torch.allclose(a, b) == same


def test_image_positions_predict_only_codes_and_text_positions_only_text():
    model = tiny()
    with torch.no_grad():
        logits = model(sequences()).logits  # (B, L, V)
    text_part, image_part = logits[:, :TEXT_LEN - 1], logits[:, TEXT_LEN - 1:]
    assert torch.isinf(image_part[..., :TEXT_VOCAB]).all()
    assert torch.isfinite(image_part[..., TEXT_VOCAB:]).all()
    assert torch.isinf(text_part[..., TEXT_VOCAB:]).all()
    assert torch.isfinite(text_part[..., :TEXT_VOCAB]).all()


@pytest.mark.parametrize("layout", ["dense", "dalle"])
def test_sampling_is_reproducible_and_yields_only_image_codes(layout):
    model = tiny(layout)
    text = sequences(3)[:, :TEXT_LEN]
    settings = dict(max_new_tokens=GRID * GRID, do_sample=True, top_k=6, temperature=1.5)
    first = model.generate(text, seed=7, **settings)
    assert torch.equal(first, model.generate(text, seed=7, **settings))
    assert not torch.equal(first, model.generate(text, seed=8, **settings))
    assert torch.equal(first[:, :TEXT_LEN], text)
    assert (first[:, TEXT_LEN:] >= TEXT_VOCAB).all()
    codes = model.image_codes(first)
    assert codes.shape == (3, GRID, GRID) and 0 <= int(codes.min()) and int(codes.max()) < CODES
    assert torch.equal(codes.flatten(1), first[:, TEXT_LEN:] - TEXT_VOCAB)
    # the cache changes nothing: without it, the same tokens
    assert torch.equal(first, model.generate(text, seed=7, use_cache=False, **settings))


def test_the_loss_weights_text_and_image_as_the_paper_by_hand():
    model = tiny(text_loss_weight=0.25)
    seqs = sequences()
    seqs[0, 2:TEXT_LEN] = 2  # more padding in row 0's caption: ignored targets
    with torch.no_grad():
        out = model(seqs, labels=seqs)
    logp = F.log_softmax(out.logits.double(), dim=-1)
    text_terms, image_terms = [], []
    for b in range(seqs.size(0)):
        for t in range(seqs.size(1) - 1):
            target = int(seqs[b, t + 1])
            if t + 1 < TEXT_LEN:
                if target != 2:
                    text_terms.append(-float(logp[b, t, target]))
            else:
                image_terms.append(-float(logp[b, t, target]))
    assert len(image_terms) == 2 * GRID * GRID and len(text_terms) == 1 + (TEXT_LEN - 2)
    text_loss, image_loss = sum(text_terms) / len(text_terms), sum(image_terms) / len(image_terms)
    assert float(out.text_loss) == pytest.approx(text_loss, rel=1e-5)
    assert float(out.image_loss) == pytest.approx(image_loss, rel=1e-5)
    assert float(out.loss) == pytest.approx(0.25 * text_loss + 0.75 * image_loss, rel=1e-5)


def test_a_tiny_model_overfits_a_few_captioned_code_grids():
    torch.manual_seed(0)
    model = tiny("dalle", d_model=64, d_ff=128).train()
    seqs = sequences(4, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = model(seqs, labels=seqs).image_loss
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 0.8 * math.log(CODES) and float(loss.detach()) < 0.05
    model.eval()  # greedy decoding from each caption now draws its own grid
    out = model.generate(seqs[:, :TEXT_LEN], max_new_tokens=GRID * GRID)
    assert torch.equal(out, seqs)


def test_image_codes_and_config_errors_name_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match=r"sequences must be \(batch, text_len \+ grid\*\*2 = "
                                         r"14\), got \(2, 13\)"):
        model.image_codes(sequences()[:, :-1])
    text_ids = sequences()
    text_ids[0, -1] = 3  # a text id where a code belongs
    with pytest.raises(ValueError, match="the image part must hold image ids in"):
        model.image_codes(text_ids)
    with pytest.raises(ConfigError, match="attention_layout must be one of .* got 'axial'"):
        TextToImageConfig(attention_layout="axial")
    with pytest.raises(ConfigError, match="text_loss_weight must be in"):
        TextToImageConfig(text_loss_weight=1.5)
    with pytest.raises(ConfigError, match="pad_token_id must be a text id"):
        TextToImageConfig(text_vocab_size=2)
    with pytest.raises(ConfigError, match="grid must be a positive integer, got 0"):
        TextToImageConfig(grid=0)


def test_save_and_load_keep_the_layout_and_the_weights(tmp_path):
    import attnlab

    model = tiny("dalle", conv_kernel=5)
    model.save_pretrained(tmp_path)
    loaded = attnlab.from_pretrained(tmp_path)
    assert loaded.config == model.config and loaded.layouts == model.layouts
    seqs = sequences()
    with torch.no_grad():
        torch.testing.assert_close(loaded(seqs).logits, model(seqs).logits)
