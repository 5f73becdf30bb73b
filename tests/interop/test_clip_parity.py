"""CLIP against Hugging Face `transformers`' CLIPModel (random weights from a config, offline):
embeddings, logits, loss, features, padded captions, attentions, legacy eos pooling, folders
both ways."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.errors import ConfigError, FolderError  # noqa: E402
from attnlab.io.hf import clip as layout  # noqa: E402
from attnlab.models import build_model  # noqa: E402
from attnlab.models.clip import CLIP, CLIPConfig  # noqa: E402

CLOSE = dict(atol=1e-4, rtol=1e-4)
TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
            pad_token_id=2)
VISION = dict(hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
              image_size=16, patch_size=4, num_channels=3)


def hf_config(text=None, vision=None, **top):
    return transformers.CLIPConfig(text_config={**TEXT, **(text or {})},
                                   vision_config={**VISION, **(vision or {})},
                                   projection_dim=24, **top)


def perturb(model):
    """Every parameter moved off its initial value, so a wrongly mapped tensor cannot hide."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def captions(vocab=99, eos=1, pad=2, lengths=(10, 6, 4)):
    """Rows [bos, words..., eos, pad...] of the given framed lengths, and their masks."""
    g = torch.Generator().manual_seed(1)
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=g)
    ids[:, 0] = 0
    for row, n in enumerate(lengths):
        ids[row, n - 1] = eos
        ids[row, n:] = pad
    mask = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def pixels(batch=3, channels=3, size=16, seed=0):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def assert_same(got, expected):
    for name in ("text_embeds", "image_embeds", "logits_per_image", "logits_per_text"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), **CLOSE,
                                   msg=name)


def test_a_transformers_folder_gives_the_same_embeddings_logits_and_loss(tmp_path):
    hf = perturb(transformers.CLIPModel(hf_config()))
    hf.save_pretrained(tmp_path)
    ours = attnlab.from_pretrained(tmp_path)
    assert isinstance(ours, CLIP) and ours.config.vision_d_model == 40
    ids, mask = captions()
    x = pixels()
    with torch.no_grad():
        expected = hf(input_ids=ids, pixel_values=x, attention_mask=mask, return_loss=True)
        got = ours(ids, x, mask, return_loss=True)
        assert_same(got, expected)
        torch.testing.assert_close(got.loss, expected.loss, **CLOSE)
        torch.testing.assert_close(ours.get_text_features(ids, mask),
                                   hf.get_text_features(input_ids=ids,
                                                        attention_mask=mask).pooler_output,
                                   **CLOSE)
        torch.testing.assert_close(ours.get_image_features(x),
                                   hf.get_image_features(pixel_values=x).pooler_output, **CLOSE)
        # padding is masked: a row's embedding does not depend on what follows its eos
        other = ids.clone()
        other[2, 4:] = 50
        torch.testing.assert_close(ours(other, attention_mask=mask).text_embeds[2],
                                   got.text_embeds[2], **CLOSE)


def test_our_folder_loads_in_transformers_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    ours = perturb(build_model("clip-tiny"))
    ours.save_pretrained(tmp_path, layout="hf")
    values = json.loads((tmp_path / "config.json").read_text())
    assert "attnlab_version" not in values and values["model_type"] == "clip"
    hf = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    ids, mask = captions(vocab=1000, lengths=(16, 9, 5))
    x = pixels(size=32)
    with torch.no_grad():
        assert_same(ours(ids, x, mask), hf(input_ids=ids, pixel_values=x, attention_mask=mask))
    assert attnlab.from_pretrained(tmp_path).config == ours.config


def test_attentions_match_transformers_eager_attention():
    hf = perturb(transformers.CLIPModel._from_config(hf_config(),
                                                     attn_implementation="eager"))
    ours = CLIP(CLIPConfig(**layout.config_values_from_hf(hf.config.to_dict()))).eval()
    ours.load_state_dict(layout.state_dict_from_hf(hf.state_dict(), ours.config))
    ids, mask = captions()
    x = pixels(2)
    with torch.no_grad():
        expected = hf(input_ids=ids, pixel_values=x, attention_mask=mask,
                      output_attentions=True)
        got = ours(ids, x, mask, output_attentions=True)
    assert [tuple(a.shape) for a in got.text_attentions] == [(3, 4, 10, 10)] * 2
    assert [tuple(a.shape) for a in got.vision_attentions] == [(2, 4, 17, 17)] * 2
    for ours_a, theirs in zip(got.vision_attentions,
                              expected.vision_model_output.attentions, strict=True):
        torch.testing.assert_close(ours_a, theirs, **CLOSE)
    for ours_a, theirs in zip(got.text_attentions, expected.text_model_output.attentions,
                              strict=True):  # real queries (padded ones differ in convention)
        for row, n in enumerate((10, 6, 4)):
            torch.testing.assert_close(ours_a[row, :, :n, :n], theirs[row, :, :n, :n], **CLOSE)


def test_legacy_eos_2_pools_at_the_largest_id_like_transformers(tmp_path):
    # openai/clip-vit-base-patch32's original config said eos_token_id=2: transformers pools
    # at argmax(input_ids) (the real <|endoftext|> is the largest id of that vocabulary)
    hf = perturb(transformers.CLIPModel(hf_config(text=dict(eos_token_id=2, pad_token_id=1))))
    hf.save_pretrained(tmp_path)
    ours = attnlab.from_pretrained(tmp_path)
    ids, mask = captions(eos=98, pad=1)  # no 2 anywhere; 98 is the largest id
    with torch.no_grad():
        torch.testing.assert_close(ours.get_text_features(ids, mask),
                                   hf.get_text_features(input_ids=ids,
                                                        attention_mask=mask).pooler_output,
                                   **CLOSE)


def test_what_transformers_cannot_hold_is_named(tmp_path):
    hf = transformers.CLIPModel(hf_config(vision=dict(layer_norm_eps=1e-6)))
    hf.save_pretrained(tmp_path / "eps")
    with pytest.raises(FolderError, match=r"text_config.layer_norm_eps=1e-05 and "
                                          r"vision_config.layer_norm_eps=1e-06 differ"):
        attnlab.from_pretrained(tmp_path / "eps")
    model = build_model("clip-tiny", dropout=0.1)
    with pytest.raises(ConfigError, match="no residual or embedding dropout"):
        model.save_pretrained(tmp_path / "hf", layout="hf")
    model.save_pretrained(tmp_path / "auto")  # auto falls back to attnlab's layout
    assert "attnlab_version" in json.loads((tmp_path / "auto" / "config.json").read_text())
