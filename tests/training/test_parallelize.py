"""Mixed precision, activation checkpointing and compile, applied from outside the model
(training/parallelize.py), in one process: gradients reach every parameter, the losses stay
close to fp32, the parameter names do not change, compiled output equals eager."""

from __future__ import annotations

import copy

import pytest
import torch

from attnlab.data.synthetic import RandomWindows
from attnlab.models import build_model
from attnlab.nn.compile import transformer_blocks
from attnlab.training.distributed import Ranks
from attnlab.training.parallelize import parallelize
from attnlab.training.trainer import Trainer, TrainerConfig

CPU = torch.device("cpu")


def lm_loss(model, batch):
    ids = batch["input_ids"]
    return model(ids, labels=ids).loss, ids.numel() - ids.size(0)


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("gpt2-tiny", dropout=0.0, attention_dropout=0.0)


def train(model, steps: int, precision: str = "fp32", **options):
    parallel = parallelize(model, Ranks(), CPU, precision=precision, **options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    trainer = Trainer(model, optimizer, lambda step: 3e-3, RandomWindows(1000, 4, 24), lm_loss,
                      TrainerConfig(max_steps=steps, precision=precision, progress=False),
                      parallel=parallel)
    losses = [trainer.train_step()[0] for _ in range(steps)]
    return losses, trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_reaches_every_parameter_and_tracks_fp32(precision):
    reference, _ = train(tiny(), 4)
    model = tiny()
    losses, trainer = train(model, 4, precision)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert losses == pytest.approx(reference, abs=0.05)
    if precision == "fp16":
        assert trainer.scaler.is_enabled() and trainer.scaler.get_scale() == 16  # no step skipped


def test_activation_checkpointing_keeps_gradients_and_names():
    plain, checkpointed = tiny(), tiny()
    names = list(checkpointed.state_dict())
    parallelize(checkpointed, Ranks(), CPU, activation_checkpointing=True)
    assert list(checkpointed.state_dict()) == names  # checkpoints and folders unchanged
    batch = RandomWindows(1000, 4, 24).next()
    for model in (plain, checkpointed):
        lm_loss(model, batch)[0].backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(),
                                 strict=True):
        assert b.grad is not None, name
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_transformer_blocks_are_found_in_both_stacks():
    assert len(transformer_blocks(build_model("transformer-tiny"))) == 4  # 2 encoder + 2 decoder
    assert len(transformer_blocks(build_model("gpt2-tiny"))) == 2


def test_compiled_blocks_equal_eager():
    eager = tiny().eval()
    compiled = copy.deepcopy(eager)
    parallel = parallelize(compiled, Ranks(), CPU, compile=True)
    ids = RandomWindows(1000, 4, 24).next()["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids).logits, eager(ids).logits, rtol=1e-4, atol=1e-4)
        with parallel.full_model() as full:  # evaluation and decoding run eagerly
            torch.testing.assert_close(full(ids).logits, eager(ids).logits)
