"""Attention maps of a model folder on one text: per-layer per-head heatmaps, a grid of all
heads, attention rollout (Abnar & Zuidema 2020), the cross-attention alignment of a translation
model, maps.json (the weights with their tokens) and a one-file HTML viewer.

    attnlab viz --model runs/translate --text "the old farmer sells red apples ." --out viz/
    attnlab viz --model DIR --text "..." --target "..." --out viz/ --layers 1 2 --heads 1

Encoder-decoders are teacher-forced on --target (default: the model's own greedy output).
Layers and heads are numbered from 1, in --layers / --heads, titles and file names:
`heads/<view>_L1H1.png` is the first head of the first layer, the name `attnlab heads` prints.
Models on the fused kernel return their weights recomputed with the reference math, so the
maps are the same either way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab.cli.settings import positive_int

if TYPE_CHECKING:
    from attnlab.viz.maps import AttentionMaps



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder with tokenizer.json")
    parser.add_argument("--text", required=True, help="the text (the source of a translator)")
    parser.add_argument("--target", default=None,
                        help="encoder-decoders only: target to teacher-force (default: greedy)")
    parser.add_argument("--out", required=True, help="folder for the PNGs, maps.json, index.html")
    parser.add_argument("--layers", type=positive_int, nargs="+", default=None, metavar="L",
                        help="per-head heatmaps for these layers only (1-based; default all)")
    parser.add_argument("--heads", type=positive_int, nargs="+", default=None, metavar="H",
                        help="per-head heatmaps for these heads only (1-based; default all)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML viewer")


def write_pictures(maps: AttentionMaps, out: Path, layers: list[int] | None,
                   heads: list[int] | None) -> tuple[list[Path], list[Path]]:
    """(overview pictures, per-head heatmaps) of every view; `layers`/`heads` are 0-based."""
    from attnlab.viz import grid
    from attnlab.viz.rollout import rollout_view

    # Views differ in depth and heads (a 1-head RNN view, a deeper decoder): each view takes
    # the chosen layers and heads it has; a number no view has is an error.
    for chosen, size, what in ((layers, "n_layers", "layers"), (heads, "n_heads", "heads")):
        most = max(getattr(view, size) for view in maps.views)
        grid.check_indices(chosen, most, what)
    overview, per_head = [], []
    for view in maps.views:
        view_layers = None if layers is None else [i for i in layers if i < view.n_layers]
        view_heads = None if heads is None else [i for i in heads if i < view.n_heads]
        stem = out / grid.slug(view.name)
        overview.append(grid.plot_grid(view, f"{stem}_grid.png"))
        per_head += grid.plot_heads(view, out / "heads", view_layers, view_heads)
        if view.kind == "cross":
            overview.append(grid.plot_alignment(view, f"{stem}_alignment.png"))
        else:
            rolled = rollout_view(view)
            overview.append(grid.plot_rollout(rolled, out / f"{grid.slug(rolled.name)}.png"))
    return overview, per_head


def write_html(maps: AttentionMaps, path: Path) -> Path:
    """index.html: the one-file viewer (attnlab.viz.html.write_viewer)."""
    from attnlab.viz.html import write_viewer

    return Path(write_viewer(maps, path))


def run(args: argparse.Namespace) -> int:
    from attnlab.serialization import atomic_write
    from attnlab.viz.extract import maps_from_folder
    from attnlab.viz.maps import AttentionMaps
    from attnlab.viz.rollout import rollout_view

    maps = maps_from_folder(args.model, args.text, args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = None if args.layers is None else [n - 1 for n in args.layers]
    heads = None if args.heads is None else [n - 1 for n in args.heads]
    overview, per_head = write_pictures(maps, out, layers, heads)
    text = json.dumps(maps.to_json()) + "\n"
    written = [*overview, atomic_write(out / "maps.json", lambda t: Path(t).write_text(text))]
    if not args.no_html:
        # The viewer also offers each self-attention view's rollout, as a one-head view.
        rolled = tuple(rollout_view(v) for v in maps.views if v.kind == "self")
        page = write_html(AttentionMaps(maps.model, maps.family, maps.views + rolled),
                          out / "index.html")
        written.append(page)
    for view in maps.views:
        print(f"{view.name}: {view.n_layers} layers x {view.n_heads} heads, "
              f"{len(view.query_tokens)} x {len(view.key_tokens)} tokens")
    for path in written:
        print(f"wrote {path}")
    print(f"wrote {len(per_head)} per-head heatmaps in {out / 'heads'}")
    return 0
