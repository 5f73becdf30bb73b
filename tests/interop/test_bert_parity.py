"""BERT against Hugging Face `transformers` (random weights from configs, offline): hidden
states, pooler, masked-LM logits and loss, classification, padding, folders both ways."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.interop.bert import config_from_hf, state_dict_from_hf  # noqa: E402
from attnlab.interop.hf_folder import save_hf  # noqa: E402
from attnlab.models.bert import Bert  # noqa: E402

TINY = dict(vocab_size=300, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
            intermediate_size=128, max_position_embeddings=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
REALISTIC = dict(TINY, vocab_size=3000, hidden_size=384, num_attention_heads=6,
                 num_hidden_layers=3, intermediate_size=1536, max_position_embeddings=512)


def perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def ours_from(hf, config_values=None) -> Bert:
    config = config_from_hf(config_values or hf.config.to_dict())
    model = Bert(config).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), config), strict=False)
    return model


@pytest.mark.parametrize("values", [TINY, REALISTIC], ids=["tiny", "realistic"])
def test_masked_lm_logits_loss_and_padding(values):
    torch.manual_seed(0)
    hf = perturb(transformers.BertForMaskedLM(transformers.BertConfig(**values)))
    ours = ours_from(hf)
    ids = torch.randint(5, values["vocab_size"], (3, 11))
    types = torch.randint(0, 2, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        got = ours(ids, attention_mask=mask, token_type_ids=types, labels=labels)
    real = mask.bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_hidden_states_and_pooler_match_bert_model():
    torch.manual_seed(1)
    hf = perturb(transformers.BertModel(transformers.BertConfig(**TINY)))
    ours = ours_from(hf)
    ids = torch.randint(5, 300, (2, 9))
    with torch.no_grad():
        expected, got = hf(ids), ours(ids)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-4, rtol=1e-4)


def test_sequence_classification_and_folders_both_ways(tmp_path):
    torch.manual_seed(2)
    config = transformers.BertConfig(**TINY, num_labels=3)
    hf = perturb(transformers.BertForSequenceClassification(config))
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, Bert) and ours.config.num_labels == 3
    ids, labels = torch.randint(5, 300, (4, 8)), torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        expected, got = hf(ids, labels=labels), ours(ids, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    save_hf(ours, tmp_path / "ours")
    back = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, expected.logits, atol=1e-4, rtol=1e-4)


def test_unsupported_settings_are_named():
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        config_from_hf({**TINY, "position_embedding_type": "relative_key"})


def test_only_the_pooler_may_be_missing_from_a_folder(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(3)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY, num_labels=2))
    hf.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing=\['classifier.bias', 'classifier.weight'\]"):
        attnlab.from_pretrained(tmp_path)


def test_bare_bert_model_folder_loads_without_a_head(tmp_path):
    """A transformers BertModel folder has no masked-LM head; its encoder loads, while a
    BertForMaskedLM folder that lost its head is still refused."""
    torch.manual_seed(5)
    hf = perturb(transformers.BertModel(transformers.BertConfig(**TINY)))
    hf.save_pretrained(tmp_path / "bare")
    ours = attnlab.from_pretrained(tmp_path / "bare")
    ids = torch.randint(5, TINY["vocab_size"], (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).last_hidden_state, hf(ids).last_hidden_state,
                                   atol=1e-4, rtol=1e-4)
    mlm = transformers.BertForMaskedLM(transformers.BertConfig(**TINY))
    mlm.save_pretrained(tmp_path / "mlm")
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "mlm" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("cls.")},
              tmp_path / "mlm" / "model.safetensors")
    with pytest.raises(ValueError, match="mlm_"):
        attnlab.from_pretrained(tmp_path / "mlm")
