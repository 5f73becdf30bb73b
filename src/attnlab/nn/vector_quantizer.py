"""Vector quantisation with an EMA codebook (van den Oord, Vinyals and Kavukcuoglu 2017,
"Neural Discrete Representation Learning", sec. 3.1-3.2 and appendix A.1; Razavi, van den Oord
and Vinyals 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2", eq. and Algorithm 1)
with dead codes restarted from the batch (Dhariwal et al. 2020, "Jukebox", sec. 3.2 "random
restarts").

Each input vector z (the encoder output, shape (..., D)) is replaced by its nearest codebook
vector e_k, k = argmin_j ||z - e_j||^2 (one matrix product, no Python loop). The forward value
is e_k; the backward pass copies the gradient from e_k to z unchanged (the straight-through
estimator: quantized = z + sg(e_k - z)). The encoder is pulled towards its codes by the
commitment loss ||z - sg(e_k)||^2 (the model weighs it by beta); the codebook is not learned by
gradient but as the exponential moving average of the vectors assigned to each code:

    N_k <- decay * N_k + (1 - decay) * n_k          n_k: vectors assigned to code k in the batch
    m_k <- decay * m_k + (1 - decay) * sum z        (of those vectors)
    N_k <- (N_k + eps) / (N + K eps) * N            Laplace smoothing, N = sum_k N_k
    e_k <- m_k / N_k

A code no batch has chosen for `restart_after` training steps in a row is dead: it is moved
onto a random encoder output of the current batch (its statistics restarted there), so the
codebook stays in use. The statistics (codebook, N, m, idle steps) are registered buffers: they
are saved with the weights and checkpointed by the trainer, and change only in training mode.

Several processes (DDP): each sees its share of the batch, so the counts and sums are summed
over the processes before the update (as SyncBatchNorm does), and the restart candidates are
rank 0's; every rank then holds the same codebook (DDP's buffer broadcast finds nothing to
change). This means a training-mode forward is a collective: every rank must run it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor  # (..., D): the codes' vectors forward, the identity backward
    codes: Tensor  # (...,) long: index of the nearest codebook vector
    commitment_loss: Tensor  # scalar: mean of (z - sg(e))^2
    perplexity: Tensor  # scalar: exp(entropy) of the codes' share in this batch
    usage: Tensor  # (K,) long: how many vectors chose each code


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """forward(z (..., D)) -> QuantizerOutput; `nearest(z)` the codes alone, `lookup(codes)`
    their vectors. Updates its codebook (EMA, restarts) in training mode only."""

    def __init__(self, codebook_size: int, code_dim: int, decay: float = 0.99,
                 eps: float = 1e-5, restart_after: int = 100) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.decay, self.eps, self.restart_after = decay, eps, restart_after
        codebook = torch.randn(codebook_size, code_dim)  # (K, D)
        self.register_buffer("codebook", codebook)
        # EMA statistics started as if each code had been chosen once, by its own vector, so
        # e_k = m_k / N_k holds from step 0 and a code no one chooses keeps its place.
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # (K,) N_k
        self.register_buffer("embed_sum", codebook.clone())  # (K, D) m_k
        # A code counts as idle from the start, so the first training step moves every code
        # that step does not choose onto one of its vectors (a data-dependent initialisation:
        # random vectors far from the encoder's outputs would leave one code taking them all).
        self.register_buffer("idle_steps", torch.full((codebook_size,), restart_after,
                                                      dtype=torch.long))  # (K,)

    def nearest(self, z: Tensor) -> Tensor:
        """(..., D) -> (...,) long: the nearest code of each vector (squared distance)."""
        flat = z.detach().reshape(-1, self.code_dim).float()  # (M, D)
        e = self.codebook.float()  # (K, D)
        with torch.autocast(flat.device.type, enabled=False):  # distances in float32
            distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t()
                        + e.pow(2).sum(1)[None, :])  # (M, K)
        return distance.argmin(1).reshape(z.shape[:-1])

    def lookup(self, codes: Tensor) -> Tensor:
        """(...,) long -> (..., D) codebook vectors."""
        return F.embedding(codes, self.codebook)

    def forward(self, z: Tensor) -> QuantizerOutput:
        if z.size(-1) != self.code_dim:
            raise ValueError(f"the quantizer takes vectors of {self.code_dim} values, got shape "
                             f"{tuple(z.shape)}")
        codes = self.nearest(z)  # (...,)
        flat_codes = codes.reshape(-1)  # (M,)
        usage = torch.bincount(flat_codes, minlength=self.codebook_size)  # (K,)
        e = self.lookup(codes).to(z.dtype)  # (..., D): the nearest vectors, before the update
        if self.training:
            self.update(z.detach().reshape(-1, self.code_dim).float(), flat_codes, usage)
        commitment = F.mse_loss(z.float(), e.detach().float())
        quantized = z + (e - z).detach()  # straight-through: forward e, backward identity
        share = usage.float() / usage.sum().clamp(min=1)  # (K,)
        perplexity = torch.exp(-(share * torch.log(share.clamp(min=1e-10))).sum())
        return QuantizerOutput(quantized, codes, commitment, perplexity, usage)

    @torch.no_grad()
    def update(self, flat: Tensor, codes: Tensor, usage: Tensor) -> None:
        """One EMA step of the codebook on the batch's vectors `flat` (M, D) and their codes
        (M,), then the restart of the codes idle for `restart_after` steps."""
        counts = usage.float()  # (K,) n_k
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)  # (K, D)
        if distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        # Restart: every code draws a candidate (no data-dependent branch, no host sync, the
        # same random numbers every step, so a resumed run draws what it would have drawn);
        # only the dead ones take it.
        candidates = flat[torch.randint(0, flat.size(0), (self.codebook_size,),
                                        device=flat.device)]  # (K, D)
        if distributed():
            dist.broadcast(candidates, src=0)
        dead = (self.idle_steps >= self.restart_after)[:, None]  # (K, 1)
        self.codebook.copy_(torch.where(dead, candidates, self.codebook))
        self.embed_sum.copy_(torch.where(dead, candidates, self.embed_sum))
        self.cluster_size.masked_fill_(dead[:, 0], 1.0)
        self.idle_steps.masked_fill_(dead[:, 0], 0)


__all__ = ["QuantizerOutput", "VectorQuantizer"]
