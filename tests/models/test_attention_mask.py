"""Every family takes attention_mask of shape exactly (batch, length): a (1, T) mask with a
batch of 2 was broadcast silently (one row's padding applied to every row) while (3, T) was
rejected; now both are refused with the same message, in forward and in generate."""

from __future__ import annotations

import pytest
import torch

from attnlab.generation.mixin import GENERATING_KINDS, model_kind
from attnlab.models import PRESETS, build_model, list_models

# text models: image and audio families (main_input_name pixel_values / input_values) have no
# token padding to mask
TINY = [name for name in list_models() if name.endswith("-tiny")
        and getattr(PRESETS[name].model_class, "main_input_name", "input_ids") == "input_ids"]
B, T = 2, 6


def run(model, ids: torch.Tensor, mask: torch.Tensor):
    if model_kind(model) == "encoder-decoder":
        return model(ids, decoder_input_ids=ids[:, :3], attention_mask=mask)
    return model(ids, attention_mask=mask)


@pytest.fixture(scope="module", params=TINY)
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def ids_for(model) -> torch.Tensor:
    return torch.randint(4, 50, (B, T))


def test_every_tiny_preset_is_covered():
    assert {"gpt2-tiny", "llama-tiny", "bert-tiny", "t5-tiny", "transformer-tiny",
            "convs2s-tiny", "rnn-luong-tiny"} <= set(TINY)


@pytest.mark.parametrize("rows", [1, 3])
def test_forward_refuses_a_mask_of_another_batch(model, rows):
    ids = ids_for(model)
    with pytest.raises(ValueError) as error:
        run(model, ids, torch.ones(rows, T, dtype=torch.long))
    message = str(error.value)
    assert f"attention_mask must have shape ({B}, {T}) (batch, length) exactly" in message
    assert f"got ({rows}, {T}); masks are not broadcast" in message


def test_forward_refuses_a_mask_of_another_length(model):
    ids = ids_for(model)
    with pytest.raises(ValueError, match=rf"attention_mask must have shape \({B}, {T}\) "
                                         rf"\(batch, length\) exactly, got \({B}, {T + 1}\)"):
        run(model, ids, torch.ones(B, T + 1, dtype=torch.long))


def test_an_exact_mask_is_accepted_and_matches_no_mask(model):
    ids = ids_for(model)
    with torch.no_grad():
        masked = run(model, ids, torch.ones(B, T, dtype=torch.long)).logits
        plain = (model(ids, decoder_input_ids=ids[:, :3]) if model_kind(model) == "encoder-decoder"
                 else model(ids)).logits
    torch.testing.assert_close(masked, plain)


@pytest.mark.parametrize("rows", [1, 3])
def test_generate_refuses_a_mask_of_another_batch(model, rows):
    if model_kind(model) not in GENERATING_KINDS:
        pytest.skip("an encoder-only model does not generate")
    ids = ids_for(model)
    with pytest.raises(ValueError, match=rf"attention_mask .*\({rows}, {T}\)"):
        model.generate(ids, torch.ones(rows, T, dtype=torch.long), max_new_tokens=2)
