"""Everything that makes one model train on many processes or faster, applied from outside the
model (DESIGN.md convention 8; torchtitan's `parallelize_*` do the same): the model code stays
single-device and knows none of it.

In the order torchtitan applies them:

1. activation checkpointing per Transformer block (`torch.distributed._composable.checkpoint`:
   the block's activations are recomputed in the backward pass instead of kept; the module
   and its parameter names stay as they are);
2. `torch.compile` per block, in place (`Module.compile()`: names unchanged; each block is one
   graph, compiled once and reused by every layer of the same shape);
3. the data-parallel strategy: `ddp` (DistributedDataParallel: every rank holds the whole model,
   gradients are averaged by all-reduce) or `fsdp` (FSDP2 `fully_shard` on each block, then on
   the root, which holds the tied embedding / output table in one unit: parameters, gradients
   and optimizer state are sharded over the ranks; with bf16 the parameters are all-gathered in
   bfloat16 and gradients reduced in float32).

Mixture-of-experts models need no `find_unused_parameters`: each layer's experts are stacked
(E, ...) tensors (nn/moe.py), so an expert that gets no token in a step gets a zero gradient
row, never a missing one, and DDP's all-reduce proceeds (tests/training/test_moe_parallel.py
trains with idle experts under DDP and FSDP2). The flag would cost a traversal of the autograd
graph every step, and PyTorch warns so when it finds nothing unused.

`Parallel` is what the Trainer talks to: the module the training forward calls, the
no-sync context of gradient-accumulation micro-steps, the full model for evaluation and saving
(rank 0 only), and the model + optimizer state dicts for sharded checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attnlab.nn.compile import compile_blocks, transformer_blocks
from attnlab.training.distributed import Ranks

log = logging.getLogger(__name__)

STRATEGIES = ("ddp", "fsdp")


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DDP whose attributes fall back to the wrapped model, so a task's loss reads
    `model.config` the same with and without it."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


@dataclass
class Parallel:
    """A model prepared for training: `model` (its parameters possibly sharded in place),
    `train_model` (what the training forward calls: the DDP wrapper, or the model)."""

    model: nn.Module
    train_model: nn.Module
    ranks: Ranks = field(default_factory=Ranks)
    strategy: str = "single"  # "single" (one process), "ddp" or "fsdp"
    compiled: bool = False

    @contextlib.contextmanager
    def micro_step(self, last: bool) -> Iterator[None]:
        """Gradient accumulation: no gradient synchronisation on micro-steps but the last."""
        if self.strategy == "ddp" and not last:
            with self.train_model.no_sync():
                yield
            return
        if self.strategy == "fsdp":
            self.model.set_requires_gradient_sync(last)
        yield

    @contextlib.contextmanager
    def full_model(self) -> Iterator[nn.Module | None]:
        """The whole model, unsharded and eager, on rank 0 (None on the other ranks): what
        evaluation, the best weights, checkpoints' model.safetensors and the final folder use.
        Every rank must enter it (FSDP gathers the shards)."""
        stance = (torch.compiler.set_stance("force_eager") if self.compiled
                  else contextlib.nullcontext())
        with stance:
            if self.strategy != "fsdp":
                yield self.model if self.ranks.is_main else None
                return
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            full = get_model_state_dict(self.model, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
            if not self.ranks.is_main:
                yield None
                return
            with torch.random.fork_rng(devices=[]):  # building the copy must not move the RNG
                twin = type(self.model)(self.model.config)
            twin.load_state_dict(full)
            yield twin.to(next(self.model.parameters()).device)

    def state_dicts(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Model and optimizer state as `torch.distributed.checkpoint` saves them: keyed by
        parameter name (the same with and without DDP / FSDP), sharded under FSDP."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, optimizer)
        return {"model": model_state, "optim": optim_state}

    def load_state_dicts(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        set_state_dict(self.model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])


def parallelize(model: nn.Module, ranks: Ranks, device: torch.device, *, strategy: str = "ddp",
                precision: str = "fp32", activation_checkpointing: bool = False,
                compile: bool = False) -> Parallel:
    """Apply activation checkpointing, compile and the strategy to `model` (on `device`), in
    that order; one process gets no strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    blocks = transformer_blocks(model)
    if activation_checkpointing:
        if not blocks:
            log.warning("activation checkpointing: %s has no Transformer blocks; nothing "
                        "checkpointed", type(model).__name__)
        from torch.distributed._composable import checkpoint

        for block in blocks:
            checkpoint(block)
    if compile:
        compile_blocks(model)
    if not ranks.distributed:
        return Parallel(model, model, ranks, "single", compile)
    if strategy == "ddp":
        wrapped = _DataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                else None)
        return Parallel(model, wrapped, ranks, "ddp", compile)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # An explicit mesh: without it fully_shard can crash on machines that also have GPUs.
    mesh = init_device_mesh(device.type, (ranks.world_size,))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if precision == "bf16" else MixedPrecisionPolicy())
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return Parallel(model, model, ranks, "fsdp", compile)
