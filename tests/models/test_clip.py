"""CLIP (models/clip.py): the contrastive loss against a float64 reference, the temperature
clamp, either side alone, causal text reading, input errors, presets, and a tiny CLIP that
learns to match 8 pairs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError, DataError
from attnlab.models import PRESETS, build_model, get_config, list_models
from attnlab.models.clip import MAX_LOGIT_SCALE, contrastive_loss


def captions(batch=4, length=8, vocab=1000, seed=0):
    """[bos, words..., eos, pad...] rows of different lengths and their masks (clip-tiny's
    specials: bos 0, eos 1, pad 2)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    lengths = [length - (row % 3) for row in range(batch)]
    ids[:, 0] = 0
    for row, n in enumerate(lengths):
        ids[row, n - 1] = 1
        ids[row, n:] = 2
    return ids, (torch.arange(length) < torch.tensor(lengths)[:, None]).long()


def pixels(batch=4, channels=3, size=32, seed=0):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("clip-tiny").eval()


def test_contrastive_loss_equals_a_float64_reference():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(3)) * 4
    x = logits.double().tolist()
    rows = [-x[i][i] + math.log(sum(math.exp(v) for v in x[i])) for i in range(5)]
    cols = [-x[j][j] + math.log(sum(math.exp(x[i][j]) for i in range(5))) for j in range(5)]
    expected = (sum(rows) / 5 + sum(cols) / 5) / 2
    loss = contrastive_loss(logits.half())  # computed in float32 whatever comes in
    assert loss.dtype == torch.float32
    assert abs(contrastive_loss(logits).item() - expected) < 1e-5
    assert abs(loss.item() - expected) < 1e-2  # half-precision input, float32 maths
    with pytest.raises(DataError, match=r"square \(batch, batch\).*\(3, 4\)"):
        contrastive_loss(torch.zeros(3, 4))


def test_logits_are_scaled_cosines_and_the_scale_is_clamped_only_for_the_loss(model):
    ids, mask = captions()
    x = pixels()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
        out = model(ids, x, mask)
        trained = model(ids, x, mask, return_loss=True)
    cosine = out.image_embeds @ out.text_embeds.t()  # (Bi, Bt)
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.logits_per_image, 1000.0 * cosine, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
    torch.testing.assert_close(trained.logits_per_image, MAX_LOGIT_SCALE * cosine, rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(trained.loss, contrastive_loss(trained.logits_per_text))
    assert out.loss is None


def test_either_side_alone_and_features_are_the_unnormalised_embeddings(model):
    ids, mask = captions()
    with torch.no_grad():
        text = model(input_ids=ids, attention_mask=mask)
        image = model(pixel_values=pixels(3))
        both = model(ids, pixels(3), mask)
        features = model.get_text_features(ids, mask)
    assert text.image_embeds is None and text.logits_per_image is None
    assert image.text_embeds is None and image.logits_per_text is None
    assert image.image_embeds.shape == (3, 32) and both.logits_per_image.shape == (3, 4)
    torch.testing.assert_close(text.text_embeds, both.text_embeds)
    assert not torch.allclose(features.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(F.normalize(features, dim=-1), text.text_embeds)
    torch.testing.assert_close(F.normalize(model.get_image_features(pixels(3)), dim=-1),
                               image.image_embeds)


def test_text_is_read_causally_and_pooled_at_the_first_eos(model):
    ids, _ = captions()
    later = ids.clone()
    later[0, 3] = 7 if ids[0, 3] != 7 else 8  # a word before row 0's eos
    later[1, -1] = 1  # row 1 ends one earlier: a second eos after its first
    later[2, -1] = 9  # row 2 ends two earlier: a word after its eos (no mask given)
    with torch.no_grad():
        a, b = model.get_text_features(ids), model.get_text_features(later)
    torch.testing.assert_close(a[1:], b[1:])  # nothing after the first eos is seen (causal)
    assert not torch.allclose(a[0], b[0])


@pytest.mark.parametrize("call, message", [
    (lambda m: m(pixel_values=pixels(2, channels=1)), r"pixel_values must have shape \(batch, 3"),
    (lambda m: m(pixel_values=pixels(2, size=16)), r"pixel_values: image size 16x16 .* 32x32"),
    (lambda m: m(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)),
     r"pixel_values must be a float tensor"),
    (lambda m: m(input_ids=torch.tensor([[0, 1000, 1]])),
     r"input_ids must be token ids in \[0, vocab_size=1000\), got values in \[0, 1000\]"),
    (lambda m: m(input_ids=torch.ones(1, 17, dtype=torch.long)),
     r"input_ids: sequence length 17 exceeds text_max_len=16"),
    (lambda m: m(input_ids=torch.tensor([[0, 1], [0, 5]])),
     r"input_ids: row 1 has no eos_token_id=1"),
    (lambda m: m(input_ids=torch.tensor([[0, 1]]), attention_mask=torch.ones(1, 3).long()),
     r"attention_mask must have shape \(1, 2\)"),
    (lambda m: m(), r"needs input_ids, pixel_values or both"),
    (lambda m: m(pixel_values=pixels(2), attention_mask=torch.ones(2, 3).long()),
     r"attention_mask given without input_ids"),
    (lambda m: m(captions(3)[0], pixels(2), return_loss=True),
     r"return_loss needs matched pairs.*input_ids \(3, 8\), pixel_values \(2, 3, 32, 32\)"),
])
def test_bad_input_is_a_data_error_naming_the_argument(model, call, message):
    with pytest.raises(DataError, match=message):
        call(model)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"text_d_model \(64\) must be divisible by "
                                          r"text_n_heads \(3\)"):
        get_config("clip-tiny", text_n_heads=3)
    with pytest.raises(ConfigError, match=r"eos_token_id must be a token id in \[0, "
                                          r"vocab_size=1000\), got 49407"):
        get_config("clip-tiny", eos_token_id=49407)
    with pytest.raises(ConfigError, match=r"vision_n_layers=100000 is outside the sane range"):
        get_config("clip-tiny", vision_n_layers=100_000)
    with pytest.raises(ConfigError, match=r"patch_size \(64\) must be <= image_size \(32\)"):
        get_config("clip-tiny", patch_size=64)
    with pytest.raises(ConfigError, match=r"activation must be one of"):
        get_config("clip-tiny", activation="tanh")


def test_presets_have_the_documented_sizes():
    assert set(list_models("clip")) == {"clip-vit-base-patch32", "clip-tiny", "clip-digits",
                                        "clip-emoji"}
    assert all(PRESETS[name].source for name in list_models("clip"))
    assert build_model("clip-tiny").num_parameters() < 1_000_000
    for name, channels in (("clip-digits", 1), ("clip-emoji", 3)):
        config = get_config(name)
        assert (config.image_size, config.patch_size, config.num_channels,
                config.text_max_len) == (32, 4, channels, 24)
        assert 1_000_000 < build_model(name).num_parameters() < 2_000_000
    # what the tasks pass: the caption tokenizer's vocabulary and specials
    config = get_config("clip-digits", vocab_size=300, text_max_len=20, bos_token_id=0,
                        eos_token_id=1, pad_token_id=2)
    assert config.vocab_size == 300
    base = get_config("clip-vit-base-patch32")  # openai/clip-vit-base-patch32
    assert (base.text_d_model, base.vision_d_model, base.patch_size, base.projection_dim,
            base.eos_token_id) == (512, 768, 32, 512, 49407)


def test_a_tiny_clip_learns_to_match_eight_pairs(one_thread):
    torch.manual_seed(0)
    model = build_model("clip-tiny").train()
    ids, mask = captions(batch=8, seed=1)
    x = pixels(8, seed=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model(ids, x, mask, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1.5 and losses[-1] < 0.1 * losses[0], losses[::10]
    with torch.no_grad():
        out = model.eval()(ids, x, mask)
    assert torch.equal(out.logits_per_image.argmax(dim=1), torch.arange(8))
