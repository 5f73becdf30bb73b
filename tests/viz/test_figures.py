"""save_png: the one way attnlab writes a matplotlib figure (temporary name, rename, close)."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from attnlab.serialization import atomic_write
from attnlab.viz import figures
from attnlab.viz.figures import save_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [1, 0, 1])
    return fig


def test_writes_a_png_through_a_temporary_name_and_closes_the_figure(tmp_path, monkeypatch):
    written: list[str] = []

    def spying_write(path, write):  # the real atomic_write, noting the temporary name
        return atomic_write(path, lambda tmp: (written.append(tmp), write(tmp))[1])

    monkeypatch.setattr(figures, "atomic_write", spying_write)
    fig = _figure()
    target = tmp_path / "deep" / "er" / "plot.png"  # parent folders do not exist yet
    returned = save_png(fig, str(target))
    assert returned == target
    assert target.read_bytes().startswith(PNG_MAGIC)
    assert len(written) == 1 and written[0] != str(target)
    assert os.path.dirname(written[0]) == str(target.parent) and not os.path.exists(written[0])
    assert sorted(p.name for p in target.parent.iterdir()) == ["plot.png"]  # no leftovers
    assert not plt.fignum_exists(fig.number)


def test_dpi_sets_the_pixel_size(tmp_path):
    small = save_png(_figure(), tmp_path / "small.png", dpi=50, tight=False)
    large = save_png(_figure(), tmp_path / "large.png", dpi=100, tight=False)
    assert Image.open(small).size == (100, 75)  # 2 x 1.5 inches at 50 dpi
    assert Image.open(large).size == (200, 150)


def test_tight_and_bbox_inches_pass_through(tmp_path, monkeypatch):
    seen: list[dict] = []
    fig = _figure()
    real_savefig = fig.savefig
    monkeypatch.setattr(fig, "savefig", lambda *a, **kw: (seen.append(kw), real_savefig(*a, **kw)))
    calls: list[str] = []
    monkeypatch.setattr(fig, "tight_layout", lambda *a, **kw: calls.append("tight"))
    save_png(fig, tmp_path / "a.png", dpi=100, tight=False, bbox_inches="tight")
    assert seen[-1] == {"dpi": 100, "format": "png", "bbox_inches": "tight"}
    assert calls == []

    fig = _figure()
    real_savefig = fig.savefig
    monkeypatch.setattr(fig, "savefig", lambda *a, **kw: (seen.append(kw), real_savefig(*a, **kw)))
    monkeypatch.setattr(fig, "tight_layout", lambda *a, **kw: calls.append("tight"))
    save_png(fig, tmp_path / "b.png")
    assert seen[-1] == {"dpi": 110, "format": "png"}  # no bbox_inches unless asked for
    assert calls == ["tight"]


def test_a_failed_write_leaves_no_file_and_still_closes_the_figure(tmp_path, monkeypatch):
    fig = _figure()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save_png(fig, tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)
