"""GPT-2 against Hugging Face `transformers` (built from a config with random weights, offline):
logits with and without padding, incremental decoding, and both directions of the weights."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attnlab.interop.gpt2 import (  # noqa: E402
    config_from_hf,
    config_to_hf,
    state_dict_from_hf,
    state_dict_to_hf,
)
from attnlab.models import build_model  # noqa: E402
from attnlab.models.gpt import GPT  # noqa: E402

SIZES = {
    "tiny": dict(vocab_size=300, n_positions=64, n_embd=64, n_head=4, n_layer=2),
    "realistic": dict(vocab_size=2000, n_positions=256, n_embd=384, n_head=6, n_layer=3),
}


def hf_model(size: str):
    torch.manual_seed(0)
    config = transformers.GPT2Config(**SIZES[size], resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random non-trivial norms and biases, not HF's ones/zeros
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def ours_from(hf) -> GPT:
    config = config_from_hf(hf.config.to_dict())
    model = GPT(config).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), config), strict=False)
    missing = set(model.state_dict()) - set(state_dict_from_hf(hf.state_dict(), config))
    assert missing <= {"lm_head.weight"}  # tied to embed_tokens
    return model


@pytest.mark.parametrize("size", list(SIZES))
def test_logits_match_without_padding(size):
    hf = hf_model(size)
    ours = ours_from(hf)
    ids = torch.randint(0, hf.config.vocab_size, (2, 17))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("side", ["right", "left"])
def test_logits_match_with_padding_on_real_tokens(side):
    hf = hf_model("tiny")
    ours = ours_from(hf)
    ids = torch.randint(0, hf.config.vocab_size, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    if side == "right":
        mask[1, 8:] = 0
        mask[2, 5:] = 0
    else:
        mask[1, :4] = 0
        mask[2, :7] = 0
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_cached_incremental_logits_match_the_full_pass():
    ours = ours_from(hf_model("tiny"))
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        full = ours(ids).logits
        cache = ours.new_cache()
        steps = [ours(ids[:, :6], cache=cache).logits]
        for t in range(6, 10):
            steps.append(ours(ids[:, t:t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_hf_loads_our_weights_back(tmp_path):
    torch.manual_seed(1)
    ours = build_model("gpt2-tiny", dropout=0.0, attention_dropout=0.0).eval()
    config = transformers.GPT2Config(**config_to_hf(ours.config))
    hf = transformers.GPT2LMHeadModel(config).eval()
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(ours), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    ids = torch.randint(0, ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
    # and the round trip ours -> HF -> ours is exact
    back = state_dict_from_hf(state_dict_to_hf(ours), ours.config)
    for name, tensor in back.items():
        torch.testing.assert_close(tensor, ours.state_dict()[name], atol=0, rtol=0, msg=name)


def test_labels_give_hf_next_token_loss():
    hf = hf_model("tiny")
    ours = ours_from(hf)
    ids = torch.randint(0, 300, (2, 11))
    labels = ids.clone()
    labels[0, -3:] = -100
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, labels=labels).loss,
                                   hf(ids, labels=labels).loss, atol=1e-5, rtol=1e-5)


def test_unsupported_hf_options_are_named():
    with pytest.raises(ValueError, match="add_cross_attention"):
        config_from_hf({"add_cross_attention": True})
    with pytest.raises(ValueError, match="activation_function"):
        config_from_hf({"activation_function": "swish"})
    with pytest.raises(ValueError, match="unexpected GPT-2 weights"):
        state_dict_from_hf({"transformer.h.9.ln_1.weight": torch.ones(4)},
                           config_from_hf({**SIZES["tiny"], "bos_token_id": 0, "eos_token_id": 0}))


def test_native_save_and_load_round_trip(tmp_path):
    from attnlab.models.io import from_pretrained, save_pretrained

    torch.manual_seed(2)
    ours = build_model("gpt2-tiny").eval()
    save_pretrained(ours, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, GPT) and loaded.config == ours.config
    ids = torch.randint(0, 1000, (1, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ours(ids).logits, atol=0, rtol=0)


def test_presets_have_the_published_sizes():
    from attnlab.models import get_config

    # GPT-2 small is 124M parameters with the tied head counted once.
    small = GPT(get_config("gpt2", dropout=0.0))
    assert round(small.num_parameters() / 1e6) == 124
    with pytest.raises(ValueError, match="eos_token_id must be in"):
        get_config("gpt2-tiny", eos_token_id=5000)


def test_hf_folders_both_ways(tmp_path):
    import attnlab
    from attnlab.interop.hf_folder import save_hf

    hf = hf_model("tiny")
    hf.save_pretrained(tmp_path / "hf")  # local folder, nothing downloaded
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, GPT) and not ours.training
    ids = torch.randint(0, 300, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
    save_hf(ours, tmp_path / "ours")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_pytorch_model_bin_is_read_without_unpickling_objects(tmp_path):
    import attnlab

    hf = hf_model("tiny")
    (tmp_path / "config.json").write_text(hf.config.to_json_string())
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = attnlab.from_pretrained(tmp_path)
    ids = torch.randint(0, 300, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
    torch.save({"evil": Exploit()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="cannot load as plain tensors"):
        attnlab.from_pretrained(tmp_path)


def test_hf_folder_errors_name_the_problem(tmp_path):
    import attnlab

    (tmp_path / "config.json").write_text('{"model_type": "bloom"}')
    with pytest.raises(ValueError, match="model_type 'bloom' is not supported"):
        attnlab.from_pretrained(tmp_path)
    hf = hf_model("tiny")
    (tmp_path / "config.json").write_text(hf.config.to_json_string())
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        attnlab.from_pretrained(tmp_path)
    state = {k: v for k, v in hf.state_dict().items() if "h.1." not in k}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items() if k != "lm_head.weight"},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing=\['decoder.layers.1"):
        attnlab.from_pretrained(tmp_path)


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))
