"""Saving a matplotlib figure as a PNG: the one place every plot of attnlab goes through.

Why one helper: every figure is written to a temporary name in its folder and renamed onto the
target (attnlab.serialization.atomic_write), so an interrupted run never leaves a half-written
PNG that looks finished; the dpi default, the tight layout and closing the figure (pyplot keeps
every open figure alive, a leak in long studies) live here instead of in twenty copies.
Uses the matplotlib Agg backend (https://matplotlib.org/stable/users/explain/figure/backends.html)
so it works headless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnlab.serialization import atomic_write  # noqa: E402


def save_png(fig: Figure, path: str | Path, *, dpi: int = 110, tight: bool = True,
             bbox_inches: str | None = None) -> Path:
    """Write `fig` to `path` as a PNG through a temporary name, then close it.

    `tight` calls `fig.tight_layout()` first (pass False for a figure laid out already, e.g.
    with `tight_layout(rect=...)` or a colorbar spanning several axes); `bbox_inches` ("tight")
    goes to `savefig` only when given. The parent folder is created. Returns the path."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {} if bbox_inches is None else {"bbox_inches": bbox_inches}
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", **extra))
    finally:
        plt.close(fig)
    return path
