"""The Audio Spectrogram Transformer (Gong et al. 2021): overlapping patches over (frequency,
time), the patch grid arithmetic, shapes, head, loss, input and config checks, presets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab
from attnlab.errors import ConfigError, DataError
from attnlab.models import PRESETS, build_model, list_models
from attnlab.models.ast import AST, ASTConfig

SMALL = dict(num_mel_bins=24, max_length=40, patch_size=8, frequency_stride=4, time_stride=6,
             d_model=32, n_heads=4, n_layers=2, d_ff=64, num_labels=3)


def model(**values) -> AST:
    torch.manual_seed(0)
    return AST(ASTConfig(**{**SMALL, **values})).eval()


def spectrograms(batch=2, frames=40, bins=24):
    return torch.randn(batch, frames, bins, generator=torch.Generator().manual_seed(1))


def hf_get_shape(c: ASTConfig) -> tuple[int, int]:
    """transformers' ASTEmbeddings.get_shape, written out (the test needs no transformers)."""
    return ((c.num_mel_bins - c.patch_size) // c.frequency_stride + 1,
            (c.max_length - c.patch_size) // c.time_stride + 1)


@pytest.mark.parametrize("values", [
    dict(), dict(num_mel_bins=128, max_length=1024, patch_size=16, frequency_stride=10,
                 time_stride=10),
    dict(num_mel_bins=25, max_length=41, frequency_stride=8, time_stride=8),  # no overlap, rest
    dict(num_mel_bins=8, max_length=8),  # one patch
], ids=["small", "audioset", "remainder", "one-patch"])
def test_patch_grid_is_hf_get_shape_and_the_sequence_length(values):
    ast = model(**values)
    assert ast.patch_grid() == hf_get_shape(ast.config)
    gf, gt = ast.patch_grid()
    assert ast.embeddings.position_embeddings.shape == (1, 2 + gf * gt, 32)
    if gf * gt < 200:
        c = ast.config
        with torch.no_grad():
            out = ast(spectrograms(frames=c.max_length, bins=c.num_mel_bins))
        assert out.last_hidden_state.shape == (2, ast.num_prefix_tokens + gf * gt, 32)


def test_audioset_grid_is_the_papers_12_by_101():
    assert AST.num_prefix_tokens == 2
    config = PRESETS["ast-base"].values
    assert hf_get_shape(ASTConfig(**config)) == (12, 101)


def test_patches_equal_unfold_and_linear_over_frequency_then_time():
    """Patch (i, j) is mel bins [4i, 4i + 8) x frames [6j, 6j + 8) of the input transposed to
    (frequency, time), patches row-major over frequency: the order transformers uses."""
    ast = model()
    x = spectrograms()  # (B, T=40, F=24)
    conv = ast.embeddings.projection
    image = x.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
    with torch.no_grad():
        patches = F.unfold(image, kernel_size=8, stride=(4, 6)).transpose(1, 2)  # (B, 5 * 6, 64)
        reference = patches @ conv.weight.reshape(32, -1).t() + conv.bias  # (B, 30, D)
        tokens = ast.embeddings(image) - ast.embeddings.position_embeddings  # (B, 32, D)
        torch.testing.assert_close(tokens[:, 2:], reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens[:, 0], ast.embeddings.cls_token[0].expand(2, -1))
        torch.testing.assert_close(tokens[:, 1],
                                   ast.embeddings.distillation_token[0].expand(2, -1))
    # patch (i=1, j=2) by hand: bins 4..11, frames 12..19
    by_hand = (x[0, 12:20, 4:12].t() * conv.weight[:, 0]).sum(dim=(1, 2)) + conv.bias
    torch.testing.assert_close(reference[0, 1 * 6 + 2], by_hand, atol=1e-5, rtol=1e-5)


def test_head_reads_the_mean_of_cls_and_distillation_states_and_loss_is_cross_entropy():
    ast = model()
    x, labels = spectrograms(), torch.tensor([2, 0])
    out = ast(x, labels=labels, output_attentions=True)
    h = out.last_hidden_state
    pooled = (h[:, 0] + h[:, 1]) / 2
    torch.testing.assert_close(out.pooler_output, pooled)
    torch.testing.assert_close(out.logits, ast.classifier(ast.head_norm(pooled)))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 32, 32)
    out.loss.backward()
    assert ast.embeddings.distillation_token.grad.abs().sum() > 0
    bare = model(num_labels=0)
    assert bare.head_norm is None and bare(x).logits is None
    with pytest.raises(DataError, match="no classification head"):
        bare(x, labels=labels)


def test_batch_rows_are_independent():
    ast = model()
    x = spectrograms(batch=3)
    with torch.no_grad():
        together = ast(x).logits
        alone = torch.cat([ast(x[i:i + 1]).logits for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad, error, match", [
    (spectrograms(bins=20), DataError, "expected 24 mel bins \\(config.num_mel_bins\\) in the "
                                       "last dimension, got 20"),
    (spectrograms(frames=41), DataError, "expected exactly 40 frames \\(config.max_length; "
                                         ".*got 41, more"),
    (spectrograms(frames=39), DataError, "got 39, fewer"),
    (spectrograms()[0], DataError, r"shape \(batch, frames=40, num_mel_bins=24\), got \(40, 24\)"),
    (torch.zeros(0, 40, 24), DataError, r"got \(0, 40, 24\)"),
    (torch.zeros(2, 40, 24, dtype=torch.long), TypeError, "float tensor .* got dtype torch.int64"),
    ([[0.0]], TypeError, "must be a torch.Tensor, got list"),
])
def test_bad_inputs_name_argument_expected_and_got(bad, error, match):
    with pytest.raises(error, match=match) as info:
        model()(bad)
    assert "input_values" in str(info.value)


@pytest.mark.parametrize("labels, match", [
    (torch.tensor([0, 3]), r"labels must be in \[0, num_labels=3\), got values in \[0, 3\]"),
    (torch.tensor([0.0, 1.0]), r"integer classes of shape \(2,\), got torch.float32"),
    (torch.tensor([0, 1, 2]), r"shape \(2,\), got torch.int64 \(3,\)"),
])
def test_bad_labels_are_named(labels, match):
    with pytest.raises(DataError, match=match):
        model()(spectrograms(), labels=labels)


@pytest.mark.parametrize("values, match", [
    (dict(patch_size=30), r"patch_size \(30\) must be <= num_mel_bins \(24\)"),
    (dict(max_length=6, patch_size=8), r"patch_size \(8\) must be <= max_length \(6\)"),
    (dict(time_stride=0), r"time_stride must be an integer in \[1, 1,048,576\], got 0"),
    (dict(num_mel_bins=2.5), "num_mel_bins must be an integer"),
    (dict(d_model=30), r"d_model \(30\) must be divisible by n_heads \(4\)"),
    (dict(labels=("a", "b")), "labels must be empty or name each of the num_labels=3"),
])
def test_bad_configs_are_named(values, match):
    with pytest.raises(ConfigError, match=match):
        ASTConfig(**{**SMALL, **values})


def test_presets_sizes_and_attnlab_layout_round_trip(tmp_path):
    assert list_models("audio-spectrogram-transformer") == ["ast-base", "ast-tiny", "ast-words"]
    tiny = build_model("ast-tiny")
    assert tiny.num_parameters() < 1_000_000
    words = ASTConfig(**PRESETS["ast-words"].values)
    assert (words.num_mel_bins, words.max_length, words.d_model, words.n_layers) == (64, 100,
                                                                                     128, 4)
    base = ASTConfig(**PRESETS["ast-base"].values)
    assert (base.d_model, base.n_layers, base.n_heads, base.num_labels) == (768, 12, 12, 527)
    labelled = build_model("ast-tiny", num_labels=2, labels=("yes", "no")).eval()
    labelled.save_pretrained(tmp_path, layout="attnlab")
    again = attnlab.from_pretrained(tmp_path)
    assert again.config == labelled.config and again.config.labels == ("yes", "no")
    x = torch.randn(1, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, labelled(x).logits)
