"""AST against Hugging Face `transformers` (random weights from configs, offline):
ASTForAudioClassification's logits, loss, hidden states and attentions, ASTModel's hidden
states and pooler, non-square patch grids and strides, folders both ways, id2label."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.io.hf.ast import config_values_from_hf, state_dict_from_hf  # noqa: E402
from attnlab.models.ast import AST, ASTConfig  # noqa: E402

TINY = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128,
            num_mel_bins=32, max_length=48, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
# F != T and frequency_stride != time_stride: a (frequency, time) mix-up changes the grid
SKEWED = dict(TINY, num_mel_bins=40, max_length=70, frequency_stride=12, time_stride=6,
              patch_size=16, num_hidden_layers=1)


def perturb(model):
    """transformers starts the tokens and positions at zero and norms at one: move them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.endswith(("bias", "token", "position_embeddings")):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def ours_from(hf) -> AST:
    values = {**hf.config.to_dict(), "architectures": [type(hf).__name__]}  # set on saving
    config = ASTConfig(**config_values_from_hf(values))
    model = AST(config).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), config))  # strict
    return model


def spectrograms(values, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, values["max_length"], values["num_mel_bins"], generator=g)


@pytest.mark.parametrize("values", [TINY, SKEWED, dict(TINY, qkv_bias=False)],
                         ids=["tiny", "skewed-grid", "no-qkv-bias"])
def test_classifier_logits_loss_hidden_states_and_attentions(values):
    torch.manual_seed(0)
    config = transformers.ASTConfig(**values, num_labels=5, attn_implementation="eager")
    hf = perturb(transformers.ASTForAudioClassification(config))
    ours = ours_from(hf)
    assert ours.patch_grid() == hf.audio_spectrogram_transformer.embeddings.get_shape(config)
    x, labels = spectrograms(values), torch.tensor([0, 4, 2])
    with torch.no_grad():
        expected = hf(x, labels=labels)
        base = hf.audio_spectrogram_transformer(x, output_attentions=True)
        got = ours(x, labels=labels, output_attentions=True)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.last_hidden_state, base.last_hidden_state,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pooler_output, base.pooler_output, atol=1e-4, rtol=1e-4)
    assert len(got.attentions) == len(base.attentions) == values["num_hidden_layers"]
    for a, b in zip(got.attentions, base.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bare_ast_model_and_its_folders_both_ways(tmp_path):
    torch.manual_seed(1)
    hf = perturb(transformers.ASTModel(transformers.ASTConfig(**TINY)))
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, AST) and ours.config.num_labels == 0 and ours.classifier is None
    x = spectrograms(TINY, batch=2, seed=1)
    with torch.no_grad():
        expected, got = hf(x), ours(x)
    assert got.logits is None
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-4, rtol=1e-4)
    ours.save_pretrained(tmp_path / "ours")  # layout auto: Hugging Face's names
    back = transformers.ASTModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).last_hidden_state, expected.last_hidden_state,
                                   atol=1e-4, rtol=1e-4)


def test_classifier_folders_both_ways_with_label_names(tmp_path):
    torch.manual_seed(2)
    names = {0: "yes", 1: "no", 2: "up"}
    config = transformers.ASTConfig(**SKEWED, id2label=names,
                                    label2id={v: k for k, v in names.items()})
    hf = perturb(transformers.ASTForAudioClassification(config))
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, AST) and ours.config.labels == ("yes", "no", "up")
    x = spectrograms(SKEWED, batch=2, seed=2)
    with torch.no_grad():
        expected = hf(x).logits
        torch.testing.assert_close(ours(x).logits, expected, atol=1e-4, rtol=1e-4)
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "audio-spectrogram-transformer"
    back = transformers.ASTForAudioClassification.from_pretrained(tmp_path / "ours").eval()
    assert back.config.id2label == names and back.config.label2id == {"yes": 0, "no": 1, "up": 2}
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, expected, atol=1e-4, rtol=1e-4)


def test_our_model_saved_and_read_by_transformers_without_label_names(tmp_path):
    torch.manual_seed(3)
    ours = AST(ASTConfig(num_mel_bins=32, max_length=48, d_model=64, n_heads=4, n_layers=2,
                         d_ff=128, num_labels=4)).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.ASTForAudioClassification.from_pretrained(tmp_path).eval()
    assert hf.config.id2label == {i: f"LABEL_{i}" for i in range(4)}
    x = spectrograms(TINY, batch=2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x).logits, atol=1e-4, rtol=1e-4)
    again = attnlab.from_pretrained(tmp_path)
    assert again.config == ours.config  # LABEL_i names read back as no names


@pytest.mark.parametrize("change, match", [
    (dict(hidden_act="gelu_new"), "hidden_act must be 'gelu'"),
    (dict(architectures=["ASTForPreTraining"]), r"architectures \['ASTForPreTraining'\]"),
])
def test_unsupported_settings_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        config_values_from_hf({**TINY, **change})


def test_a_folder_missing_the_head_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(4)
    hf = transformers.ASTForAudioClassification(transformers.ASTConfig(**TINY, num_labels=3))
    hf.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.dense")},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="classifier"):
        attnlab.from_pretrained(tmp_path)
