"""One-file interactive attention viewer: inline CSS, vanilla JS and the maps as embedded JSON.

The page shows each view of an `AttentionMaps` (encoder self, decoder self, cross, self) as a
heatmap with tokens on both axes and as two token columns joined by lines whose opacity is the
weight, the picture popularised by Vig (2019), "A Multiscale Visualization of Attention in the
Transformer Model" (bertviz). Hovering or focusing a token shows what it attends to and what
attends to it. Nothing is fetched at view time: no CDN, and a Content-Security-Policy that
allows only the page's own script (by hash) keeps it so; it works opened from file://.

Maps of a ViT / DeiT / AST (`AttentionMaps.patches`, see viz/patches.py) show the picture
instead of token lists: the image or spectrogram cut into its patch grid, with the chosen
patch's (or [CLS]'s) attention over every patch as a heat overlay; hovering a patch shows its
row, clicking keeps it, the prefix tokens ([CLS], [DIST]) are cells beside it. The picture
travels as base64 PNG inside the JSON and is decoded with `createImageBitmap`, so the page
still loads nothing.

Safety: the maps travel as JSON in a `<script type="application/json">` block with `<`, `>`,
`&` and the JS line separators written as \\u escapes, so a token such as `</script>` cannot end
the block; the script shows token text with `textContent` only, never as markup.

The page template, stylesheet and script are package data in `attnlab/viz/viewer/` (viewer.html,
viewer.css, viewer.js) so they can be read and linted as what they are; this module reads them
with `importlib.resources` and inlines all three into the one written file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from attnlab.viz.maps import AttentionMaps

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def embed_json(obj: Any) -> str:
    """JSON that is safe inside `<script type="application/json">`: no `<`, `>` or `&` left."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for char, escape in _JSON_ESCAPES.items():
        text = text.replace(char, escape)
    return text


_SLOTS = ("CSP", "TITLE", "STYLE", "DATA", "SCRIPT")  # written @NAME@ in viewer.html
_SLOT = re.compile("@(" + "|".join(_SLOTS) + ")@")
ASSETS = ("viewer.html", "viewer.css", "viewer.js")  # in the package folder attnlab/viz/viewer/


def read_package_file(package: str, folder: str, name: str, names: tuple[str, ...]) -> str:
    """The text of one shipped file of a one-file page (`name` one of `names`), read from the
    installed package (`package`/`folder`/`name`); the viewer and serve's playground use it."""
    if name not in names:
        raise ValueError(f"name must be one of {names}, got {name!r}")
    return resources.files(package).joinpath(folder).joinpath(name).read_text("utf-8")


def check_slots(template: str, slots: tuple[str, ...], name: str) -> None:
    """A RuntimeError unless `template` holds each @SLOT@ exactly once (an edited template
    that lost or doubled a slot would write a page without its part)."""
    for slot in slots:
        count = template.count(f"@{slot}@")
        if count != 1:
            raise RuntimeError(f"{name} must hold @{slot}@ once, got {count} times")


def sha256_source(text: str) -> str:
    """The CSP source that allows one inline block: the browser hashes the exact text between
    its tags, so a template writes <script>@SCRIPT@</script> with nothing around the slot."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode(
        "ascii")


def read_asset(name: str) -> str:
    """The text of one shipped viewer file (one of `ASSETS`), read from the installed package."""
    return read_package_file("attnlab.viz", "viewer", name, ASSETS)


@functools.cache
def _assets() -> tuple[str, str, str, str]:
    """(template, style, script, CSP script hash), read once per process."""
    page, style, script = (read_asset(name) for name in ASSETS)
    check_slots(page, _SLOTS, "viewer.html")
    return page, style, script, sha256_source(script)


def _colormap(name: str = "viridis", n: int = 64) -> list[str]:
    """The matplotlib colormap the PNG heatmaps use, sampled to `n` hex colours."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    colours = []
    for i in range(n):
        r, g, b, _ = cmap(i / (n - 1))
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colours


def _check_maps(maps: AttentionMaps) -> None:
    if not isinstance(maps, AttentionMaps):
        raise TypeError(f"maps must be an AttentionMaps, got {type(maps).__name__}")
    for view in maps.views:
        if not bool(view.weights.isfinite().all()):
            raise ValueError(f"{view.name}: weights must be finite, got NaN or inf values")


def render_viewer(maps: AttentionMaps, *, title: str | None = None, decimals: int = 4) -> str:
    """The viewer page for `maps` as one HTML string (see `write_viewer`)."""
    _check_maps(maps)
    if decimals < 1:
        raise ValueError(f"decimals must be >= 1, got {decimals}")
    title = title if title is not None else f"attention: {maps.model}"
    payload = {"title": title, "colormap": _colormap(), **maps.to_json(decimals)}
    page, style, script, script_hash = _assets()
    csp = (
        "default-src 'none'; "
        f"script-src '{script_hash}'; "
        "style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    slots = {
        "CSP": html.escape(csp, quote=True),
        "TITLE": html.escape(title, quote=True),
        "STYLE": style,
        "DATA": embed_json(payload),
        "SCRIPT": script,
    }
    # one pass, so text put into one slot (a token "@SCRIPT@") is never read as another slot
    return _SLOT.sub(lambda match: slots[match.group(1)], page)


def write_viewer(
    maps: AttentionMaps, path: str | os.PathLike[str], *, title: str | None = None,
    decimals: int = 4,
) -> Path:
    """Write the self-contained interactive viewer of `maps` to `path` and return the path.

    The file needs nothing else (no network, no other file); open it in any browser.
    `decimals` rounds the embedded weights (4 keeps the file small and exact to 1e-4).
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"path must be a file name, got the directory {str(path)!r}")
    text = render_viewer(maps, title=title, decimals=decimals)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees a half-written page
    return path
