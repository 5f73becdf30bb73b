"""LLaMA-style decoders against Hugging Face `transformers` (random weights from configs,
offline): logits with and without padding, GQA, Qwen2 biases, greedy generation, weights both
ways, HF folders."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.interop.hf_folder import save_hf  # noqa: E402
from attnlab.interop.llama import config_from_hf, state_dict_from_hf  # noqa: E402
from attnlab.models.llama import Llama  # noqa: E402

TINY = dict(vocab_size=300, hidden_size=64, intermediate_size=172, num_attention_heads=4,
            num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=128,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
REALISTIC = dict(TINY, vocab_size=2000, hidden_size=384, intermediate_size=1024,
                 num_attention_heads=6, num_key_value_heads=2, num_hidden_layers=3,
                 max_position_embeddings=512)


def hf_model(kind="llama", **values):
    torch.manual_seed(0)
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                    "mistral": transformers.MistralConfig}[kind]
    extra = {"sliding_window": None} if kind in ("qwen2", "mistral") else {}
    model = transformers.AutoModelForCausalLM.from_config(
        config_class(**{**TINY, **values, **extra})).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def ours_from(hf) -> Llama:
    config = config_from_hf(hf.config.to_dict())
    model = Llama(config).eval()
    state = state_dict_from_hf(hf.state_dict(), config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return model


@pytest.mark.parametrize("kind, values", [
    ("llama", {}), ("llama", REALISTIC), ("llama", {"tie_word_embeddings": True}),
    ("qwen2", {}), ("mistral", {}),
], ids=["llama-tiny", "llama-realistic", "llama-tied", "qwen2", "mistral"])
def test_logits_match(kind, values):
    hf = hf_model(kind, **values)
    ours = ours_from(hf)
    ids = torch.randint(3, hf.config.vocab_size, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_logits_match_with_right_padding():
    hf = hf_model()
    ours = ours_from(hf)
    ids = torch.randint(3, 300, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        expected, got = hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_greedy_generation_matches_with_left_padding():
    hf = hf_model()
    ours = ours_from(hf)
    torch.manual_seed(4)
    ids = torch.randint(3, 300, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids = ids.masked_fill(mask == 0, 0)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                           pad_token_id=0, eos_token_id=2)
    got = ours.generate(ids, mask, max_new_tokens=10, eos_token_id=2, pad_token_id=0)
    assert torch.equal(got, expected)


def test_hf_folders_both_ways(tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, Llama) and ours.config.n_kv_heads == 2
    save_hf(ours, tmp_path / "ours")
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(3, 300, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_unsupported_settings_are_named():
    with pytest.raises(ValueError, match="rope scaling 'llama3'"):
        config_from_hf({**TINY, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(ValueError, match="sliding_window=16"):
        config_from_hf({**TINY, "model_type": "mistral", "sliding_window": 16})
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        config_from_hf({**TINY, "num_key_value_heads": 3})
