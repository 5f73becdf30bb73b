"""Pictures of positional encodings, computed by the very modules the models use (POSITION).

- Sinusoidal (Vaswani et al., 2017, "Attention Is All You Need", sec. 3.5): the table
  (positions x dimensions) and the dot product PE(p) . PE(p + k) against the offset k, which
  depends on k only (each sin/cos pair turns by a fixed angle per step).
- RoPE (Su et al., 2021, "RoFormer"): one vector x used as query and key, rotated to positions
  i and j; the score R_i x . R_j x depends on j - i only. Averaged over random vectors it is the
  Dh/2-frequency sum of cosines; for the all-ones vector it shows the paper's long-term decay
  (sec. 3.4.3).
- ALiBi (Press et al., 2022, "Train Short, Test Long"): the bias each head adds to a score,
  -m_h * distance, with the paper's geometric slopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from attnlab.nn.position import POSITION  # noqa: E402
from attnlab.nn.position.base import check_positive_int  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402


@dataclass(frozen=True)
class SinusoidalData:
    table: Tensor  # (L, D): row p is the module's encoding of position p
    distances: Tensor  # (L,) offsets k = 0 .. L-1
    similarity_from_start: Tensor  # (L,) PE(0) . PE(k)
    similarity_from_middle: Tensor  # (L - L//2,) PE(L//2) . PE(L//2 + k)


@dataclass(frozen=True)
class RopeData:
    head_dim: int
    distances: Tensor  # (L,) offsets k = j - i = 0 .. L-1
    random_mean: Tensor  # (L,) mean over random x of R_0 x . R_k x
    random_std: Tensor  # (L,) their standard deviation
    ones: Tensor  # (L,) R_0 1 . R_k 1 for the all-ones vector
    n_vectors: int


@dataclass(frozen=True)
class AlibiData:
    slopes: Tensor  # (H,) the module's slopes
    distances: Tensor  # (L,) |i - j| = 0 .. L-1
    bias: Tensor  # (H, L) bias of the last query on the key `distance` positions back


def sinusoidal_data(d_model: int, length: int) -> SinusoidalData:
    """The sinusoidal module's table for positions 0..length-1 and its dot product vs offset."""
    check_positive_int("length", length)
    module = POSITION.build("sinusoidal", d_model=d_model, n_heads=1, max_seq_len=length)
    table = module(torch.arange(length)).double()  # (L, D)
    middle = length // 2
    return SinusoidalData(
        table=table.float(),
        distances=torch.arange(length),
        similarity_from_start=(table @ table[0]).float(),  # (L,)
        similarity_from_middle=(table[middle:] @ table[middle]).float(),  # (L - L//2,)
    )


def rope_data(head_dim: int, length: int, n_vectors: int = 256, seed: int = 0) -> RopeData:
    """Scores between one vector rotated by the rope module to position 0 and to position k."""
    check_positive_int("length", length)
    check_positive_int("n_vectors", n_vectors)
    module = POSITION.build("rope", d_model=head_dim, n_heads=1, max_seq_len=length,
                            head_dim=head_dim)
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n_vectors, head_dim, generator=generator, dtype=torch.float64)
    vectors = torch.cat([vectors, torch.ones(1, head_dim, dtype=torch.float64)])  # (N + 1, Dh)
    x = vectors[:, None, None, :].expand(-1, 1, length, -1)  # (N + 1, 1, L, Dh)
    rotated = module(x, torch.arange(length))[:, 0]  # (N + 1, L, Dh)
    scores = torch.einsum("nd,nld->nl", rotated[:, 0], rotated)  # (N + 1, L)
    return RopeData(
        head_dim=head_dim,
        distances=torch.arange(length),
        random_mean=scores[:-1].mean(0).float(),
        random_std=scores[:-1].std(0).float(),
        ones=scores[-1].float(),
        n_vectors=n_vectors,
    )


def alibi_data(n_heads: int, length: int) -> AlibiData:
    """The alibi module's bias for the last of `length` queries against every key, per head."""
    check_positive_int("length", length)
    module = POSITION.build("alibi", d_model=n_heads, n_heads=n_heads, max_seq_len=length)
    bias = module(length, length)[0, :, -1]  # (H, S): key j sits length-1-j positions back
    return AlibiData(slopes=module.slopes.clone(), distances=torch.arange(length),
                     bias=bias.flip(-1))  # (H, L) indexed by distance


def plot_sinusoidal(data: SinusoidalData, out: str | Path) -> list[Path]:
    """sinusoidal.png (the table) and sinusoidal_similarity.png (dot product vs offset)."""
    out = Path(out)
    L, D = data.table.shape
    fig, ax = plt.subplots(figsize=(8, 5))
    image = ax.imshow(data.table.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto",
                      interpolation="nearest")
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title(f"sinusoidal encoding (d_model={D}, {L} positions)")
    fig.colorbar(image, ax=ax)
    table_path = save_png(fig, out / "sinusoidal.png", dpi=120)

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(data.distances.numpy(), data.similarity_from_start.numpy(), label="PE(0) . PE(k)")
    k_mid = data.distances[: data.similarity_from_middle.numel()].numpy()
    ax.plot(k_mid, data.similarity_from_middle.numpy(), "--",
            label=f"PE({L // 2}) . PE({L // 2}+k)")
    ax.set_xlabel("offset k")
    ax.set_ylabel("dot product")
    ax.set_title(f"sinusoidal: similarity depends on the offset only (max {D // 2} at k=0)")
    ax.legend()
    ax.grid(alpha=0.3)
    return [table_path, save_png(fig, out / "sinusoidal_similarity.png", dpi=120)]


def plot_rope(data: RopeData, out: str | Path) -> Path:
    """rope.png: score vs distance for random vectors (mean +- std) and the all-ones vector."""
    k = data.distances.numpy()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    mean, std = data.random_mean.numpy(), data.random_std.numpy()
    top.plot(k, mean, label=f"mean over {data.n_vectors} random x ~ N(0, I)")
    top.fill_between(k, mean - std, mean + std, alpha=0.2, label="+- 1 std")
    top.set_ylabel("R_i x . R_j x")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(k, data.ones.numpy(), color="C1", label="x = all ones (RoFormer sec. 3.4.3)")
    bottom.set_xlabel("distance j - i")
    bottom.set_ylabel("R_i x . R_j x")
    bottom.legend()
    bottom.grid(alpha=0.3)
    top.set_title(f"RoPE: score of one vector rotated to positions i and j (head_dim="
                  f"{data.head_dim})")
    return save_png(fig, Path(out) / "rope.png", dpi=120)


def plot_alibi(data: AlibiData, out: str | Path) -> Path:
    """alibi.png: bias vs distance, one line per head, labelled by its slope."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    k = data.distances.numpy()
    for h, slope in enumerate(data.slopes.tolist()):
        ax.plot(k, data.bias[h].numpy(), label=f"head {h}: m = 1/{1 / slope:g}")
    ax.set_xlabel("distance |i - j|")
    ax.set_ylabel("bias added to the score")
    ax.set_title(f"ALiBi: -m_h |i - j| for {data.slopes.numel()} heads")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save_png(fig, Path(out) / "alibi.png", dpi=120)


def plot_positions(out: str | Path, d_model: int = 128, length: int = 256, n_heads: int = 8,
                   n_vectors: int = 256, seed: int = 0) -> list[Path]:
    """Every position picture into `out`; returns the PNG paths."""
    paths = plot_sinusoidal(sinusoidal_data(d_model, length), out)
    paths.append(plot_rope(rope_data(d_model, length, n_vectors, seed), out))
    paths.append(plot_alibi(alibi_data(n_heads, length), out))
    return paths
