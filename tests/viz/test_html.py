"""The one-file HTML attention viewer: the page as a string, and the page in headless Chromium.

The browser tests drive a real Chromium through its DevTools protocol over a pipe
(--remote-debugging-pipe; the driver is tests/browser.py, shared with the serve playground's
tests), so they need no driver package and no network; they skip with a clear message where no
Chromium is installed (CI installs Debian's `chromium`).

    python tests/viz/test_html.py --screenshot docs/viewer.png --model DIR --text "..."

takes the screenshot in docs/ of a real model's maps.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch

if __name__ == "__main__":  # run as a script (the screenshot): pytest is not there to put
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ on the path
from browser import Browser, Page, chromium_binary, start_browser

from attnlab.viz import html as viewer_html
from attnlab.viz.html import ASSETS, embed_json, read_asset, render_viewer, write_viewer
from attnlab.viz.maps import AttentionMaps, AttentionView, PatchGrid

torch.set_num_threads(1)

EVIL = (
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(2)</script>",
    "<!--",
    "@SCRIPT@",
    "a\u2028b",
    "\"'&amp;",
)


def _planted(T: int, S: int, L: int = 2, H: int = 3, seed: int = 0) -> torch.Tensor:
    """(L, H, T, S): head 0 attends to the previous key, head 1 to the first, head 2 random."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(L, H, T, S)
    for t in range(T):
        w[:, 0, t, max(0, min(t - 1, S - 1))] = 1.0
    w[:, 1, :, 0] = 1.0
    w[:, 2] = torch.rand(L, T, S, generator=g).softmax(-1)
    w[1] = w[1].roll(1, dims=0)  # layer 1 differs from layer 0: heads permuted
    return w


def _maps(query: tuple[str, ...], key: tuple[str, ...] | None = None) -> AttentionMaps:
    if key is None:
        weights = _planted(len(query), len(query))
        view = AttentionView("self-attention", "self", query, query, weights)
        return AttentionMaps("hand-built", "gpt2", (view,))
    views = (
        AttentionView("encoder self-attention", "self", key, key, _planted(len(key), len(key))),
        AttentionView("decoder self-attention", "self", query, query,
                      _planted(len(query), len(query), seed=1)),
        AttentionView("cross-attention", "cross", query, key,
                      _planted(len(query), len(key), seed=2)),
    )
    return AttentionMaps("hand-built", "transformer", views)


def _embedded(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="attn-data">(.*?)</script>', page, re.S)
    assert match is not None
    return json.loads(match.group(1))


# ---- the page as a string ----

def test_embedded_json_round_trips_and_hides_markup() -> None:
    maps = _maps(("<s>",) + EVIL + ("end",))
    page = render_viewer(maps)
    data = _embedded(page)
    assert data["views"] == maps.to_json()["views"]
    assert data["model"] == "hand-built" and data["family"] == "gpt2"
    # the only script ends are the page's own two; no token became markup
    assert page.count("</script>") == 2 and page.lower().count("<script") == 2
    assert "<img" not in page and "<!--" not in page and "\u2028" not in page
    assert "@SCRIPT@" not in page.split('id="attn-data">', 1)[0]


def test_embed_json_escapes() -> None:
    text = embed_json({"t": "</script>&<!--\u2028\u2029"})
    assert not set("<>&") & set(text) and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"t": "</script>&<!--\u2028\u2029"}


def test_page_is_self_contained() -> None:
    page = render_viewer(_maps(("a", "b", "c"), ("x", "y")))
    assert not re.search(r"https?:|ftp:|//[\w.-]+\.[a-z]{2,}", page)  # no URL at all
    assert not re.search(r"<(link|iframe|object|embed|img|base)\b", page, re.I)
    assert not re.search(r"\b(src|href)\s*=|@import|url\(|fetch\(|XMLHttpRequest|WebSocket", page)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and "default-src &#x27;none&#x27;" in csp.group(1)
    assert "innerHTML" not in page and "outerHTML" not in page and "document.write" not in page


def test_title_is_escaped(tmp_path: Path) -> None:
    page = render_viewer(_maps(("a", "b")), title="<b>x</b> & y")
    assert "<title>&lt;b&gt;x&lt;/b&gt; &amp; y</title>" in page
    path = write_viewer(_maps(("a", "b")), tmp_path / "deep" / "v.html")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not list(path.parent.glob("*.tmp"))


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="AttentionMaps"):
        render_viewer({"views": []})  # type: ignore[arg-type]
    w = _planted(2, 2)
    w[0, 0, 0, 0] = float("nan")
    maps = AttentionMaps("m", "gpt2", (AttentionView("self", "self", ("a", "b"), ("a", "b"), w),))
    with pytest.raises(ValueError, match="finite"):
        render_viewer(maps)
    with pytest.raises(ValueError, match="decimals"):
        render_viewer(_maps(("a", "b")), decimals=0)



# ---- the shipped page, stylesheet and script ----

def test_viewer_files_ship_as_package_resources() -> None:
    folder = resources.files("attnlab.viz").joinpath("viewer")
    assert sorted(ASSETS) == ["viewer.css", "viewer.html", "viewer.js"]
    for name in ASSETS:
        shipped = folder.joinpath(name)
        assert shipped.is_file(), f"{name} is not package data of attnlab.viz"
        assert read_asset(name) == shipped.read_text(encoding="utf-8") != ""
    with pytest.raises(ValueError, match="name must be one of .*'viewer.svg'"):
        read_asset("viewer.svg")


def test_page_inlines_the_shipped_files() -> None:
    template, style, script = (read_asset(name) for name in ASSETS)
    page = render_viewer(_maps(("a", "b", "c"), ("x", "y")))
    # the files as they are, between their tags: nothing is left to load at view time
    assert f"<style>{style}</style>" in page and f"<script>{script}</script>" in page
    assert page.startswith(template.split("@CSP@", 1)[0])
    tags = re.findall(r"<(script|style|link)\b([^>]*)>", page, re.I)
    assert tags == [("style", ""), ("script", ' type="application/json" id="attn-data"'),
                    ("script", "")]
    assert not re.search(r"\b(src|href)\s*=", page)
    # an edit to a file must not end its own block early, nor add markup the page tests forbid
    assert "</style" not in style.lower() and "</script" not in script.lower()
    assert "<!--" not in template + style + script
    # the CSP allows the script by the hash of the exact text the browser finds between the tags
    inlined = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert inlined == [script]
    digest = base64.b64encode(hashlib.sha256(inlined[0].encode("utf-8")).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and f"script-src &#x27;sha256-{digest}&#x27;;" in csp.group(1)


def test_template_missing_a_slot_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = read_asset
    broken = {"viewer.html": shipped("viewer.html").replace("@DATA@", "")}
    monkeypatch.setattr(viewer_html, "read_asset", lambda name: broken.get(name) or shipped(name))
    viewer_html._assets.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="viewer.html must hold @DATA@ once, got 0"):
            render_viewer(_maps(("a", "b")))
    finally:
        viewer_html._assets.cache_clear()  # the next test reads the shipped files again


# ---- the page in headless Chromium ----


@pytest.fixture(scope="module")
def browser():
    b = start_browser("the HTML viewer's browser tests")
    yield b
    b.close()


@pytest.fixture(scope="module")
def page(browser):
    return Page(browser)


def _load(page: Page, tmp_path: Path, maps: AttentionMaps) -> Path:
    path = write_viewer(maps, tmp_path / "viewer.html")
    page.load(path)
    assert page.js("document.getElementById('error').hidden") is True, page.js(
        "document.getElementById('error').textContent")
    return path


def _pixel(page: Page, t: int, s: int) -> list[int]:
    return page.js(
        "(() => { const g = window.attnViewer.geometry(); const c = document.getElementById("
        f"'heatmap').getContext('2d'); const x = g.left + ({s} + 0.5) * g.cell, y = ({t} + 0.5) *"
        " g.cell; return Array.from(c.getImageData(x, y, 1, 1).data.slice(0, 3)); })()")


def _hex(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


def test_loads_from_file_with_no_errors_and_no_requests(page: Page, tmp_path: Path) -> None:
    maps = _maps(("the", "cat", "sat", "on", "the", "mat"), ("die", "Katze", "sass"))
    path = _load(page, tmp_path, maps)
    assert page.js("document.querySelectorAll('#view-select option').length") == 3
    assert page.js("document.querySelectorAll('#head-select option').length") == 4  # mean + 3
    assert page.js("document.querySelectorAll('#query-list .tok').length") == 3  # encoder
    assert page.js("document.querySelectorAll('#lines line').length") > 0
    page.js("(() => { const s = document.getElementById('view-select'); s.value = '2';"
            " s.dispatchEvent(new Event('change')); })()")  # the cross-attention view
    assert page.js("Array.from(document.querySelectorAll('#key-list .tok'), e => e.textContent)"
                   ) == ["die", "Katze", "sass"]
    assert page.errors() == []
    assert [u for u in page.requests() if u != path.resolve().as_uri()] == []


def test_choosing_another_head_changes_the_picture(page: Page, tmp_path: Path) -> None:
    maps = _maps(("a", "b", "c", "d", "e"))
    _load(page, tmp_path, maps)
    colours = json.loads(re.search(r'"colormap":(\[.*?\])', render_viewer(maps)).group(1))
    before = page.js("document.getElementById('heatmap').toDataURL()")
    for head in (0, 1):  # choose the head through the select, as a user does
        page.js("(() => { const s = document.getElementById('head-select');"
                f" s.value = '{head}'; s.dispatchEvent(new Event('change')); }})()")
        assert page.js("window.attnViewer.state.head") == head
        # counted from 1, as `attnlab viz` files and `attnlab heads` name heads (L1H1)
        assert f"layer 1 \u00b7 head {head + 1}" in page.js(
            "document.getElementById('subtitle').textContent")
        w = maps.views[0].weights[0, head]
        for t, s in ((2, 1), (2, 0), (3, 3)):  # each cell drawn in the colour of its weight
            expected = _hex(colours[round(float(w[t, s] / w.max()) * (len(colours) - 1))])
            assert _pixel(page, t, s) == expected, (head, t, s)
    after = page.js("document.getElementById('heatmap').toDataURL()")
    assert after != before
    page.js("document.body.focus()")
    page.press("]")  # keyboard: next head
    assert page.js("window.attnViewer.state.head") == 2
    page.press("]")  # after the last head comes the mean of heads
    assert page.js("window.attnViewer.state.head") == "mean"
    page.press(".")  # next layer
    assert page.js("window.attnViewer.state.layer") == 1
    assert page.js("document.getElementById('heatmap').toDataURL()") != after
    assert page.errors() == []


def test_hovering_a_token_highlights_what_it_attends_to(page: Page, tmp_path: Path) -> None:
    tokens = ("a", "b", "c", "d", "e")
    maps = _maps(tokens)
    _load(page, tmp_path, maps)
    page.js("(() => { const s = document.getElementById('head-select');"
            " s.value = '0'; s.dispatchEvent(new Event('change')); })()")  # previous-token head
    page.hover("#query-list .tok[data-index='3']")
    assert page.js("document.querySelector('#query-list .tok.active').dataset.index") == "3"
    assert page.js("Array.from(document.querySelectorAll('#key-list .tok.top'),"
                   " e => e.dataset.index)") == ["2"]
    weights = page.js("Array.from(document.querySelectorAll('#key-list .tok'),"
                      " e => Number(e.dataset.weight))")
    assert weights == [0, 0, 1, 0, 0]
    assert page.js("document.querySelectorAll('#lines line').length") == 1  # only its lines
    page.hover("#key-list .tok[data-index='0']")  # what attends to the first token: a and b
    weights = page.js("Array.from(document.querySelectorAll('#query-list .tok'),"
                      " e => Number(e.dataset.weight))")
    assert weights == [1, 1, 0, 0, 0]
    page.hover("h1")
    assert page.js("document.querySelectorAll('.tok.active, .tok.top').length") == 0
    mean = maps.views[0].weights[0].mean(0)  # mean of heads, query 4
    page.js("(() => { const s = document.getElementById('head-select');"
            " s.value = 'mean'; s.dispatchEvent(new Event('change')); })()")
    page.js("document.querySelector(\"#query-list .tok[data-index='4']\").focus()")  # keyboard
    weights = page.js("Array.from(document.querySelectorAll('#key-list .tok'),"
                      " e => Number(e.dataset.weight))")
    assert weights == pytest.approx(mean[4].tolist(), abs=2e-4)
    assert page.errors() == []


def test_hostile_tokens_show_as_text(page: Page, tmp_path: Path) -> None:
    tokens = ("<s>",) + EVIL
    maps = _maps(tokens, ("x",) + EVIL)
    _load(page, tmp_path, maps)
    shown = page.js("Array.from(document.querySelectorAll('#query-list .tok'), e => e.textContent)")
    assert shown == ["x", *EVIL]  # the encoder view comes first
    page.js("(() => { const s = document.getElementById('view-select'); s.value = '2';"
            " s.dispatchEvent(new Event('change')); })()")  # cross-attention
    shown = page.js("Array.from(document.querySelectorAll('#query-list .tok'), e => e.textContent)")
    assert shown == list(tokens)
    for i in range(len(tokens)):
        page.hover(f"#query-list .tok[data-index='{i}']")
        page.hover(f"#key-list .tok[data-index='{i}']")
    page.hover("#heatmap")
    assert "\u2192" in page.js("document.getElementById('cell-info').textContent")
    assert page.js("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert page.js("document.scripts.length") == 2
    assert page.js("document.querySelectorAll('.tok *').length") == 0  # no element inside a token
    assert page.errors() == []


def test_long_input_stays_light(page: Page, tmp_path: Path) -> None:
    tokens = tuple(f"t{i}" for i in range(64))
    g = torch.Generator().manual_seed(3)
    weights = torch.rand(2, 4, 64, 64, generator=g).softmax(-1)
    view = AttentionView("self-attention", "self", tokens, tokens, weights)
    _load(page, tmp_path, AttentionMaps("long", "gpt2", (view,)))
    assert 0 < page.js("document.querySelectorAll('#lines line').length") <= 8 * 64 + 64
    page.hover("#key-list .tok[data-index='63']")
    assert page.js("document.querySelectorAll('#lines line').length") <= 64
    assert page.js("document.querySelectorAll('#query-list .tok[data-weight]').length") == 64
    assert page.errors() == []


# ---- patch maps (ViT, DeiT, AST): the picture cut into patches ----

def _grey_png(rows: int, cols: int, level: int = 128) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (cols, rows), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def _patch_maps(kind: str = "image", layer_numbers: tuple[int, ...] = ()) -> AttentionMaps:
    """A flat grey picture. image: 3 x 3 patches of 4 x 4 (12 x 12), [CLS]; audio: 2 x 3
    patches of 4 x 4 at stride 3 over 8 mel bins x 10 frames (bin 7 uncovered), [CLS] +
    [DIST], drawn frequency up. Head 0: each patch attends to the next patch, [CLS] to
    patch 4 (image: the centre) or patch 0 (audio: lowest frequency, earliest), the other
    tokens to themselves. Head 1: uniform."""
    if kind == "image":
        grid = PatchGrid("image", (3, 3), (4, 4), (4, 4), (12, 12), ("[CLS]",), False,
                         _grey_png(12, 12))
        cls_target = 4
    else:
        grid = PatchGrid("audio", (2, 3), (4, 4), (3, 3), (8, 10), ("[CLS]", "[DIST]"), True,
                         _grey_png(8, 10))
        cls_target = 0
    prefix, n = len(grid.prefix), grid.n_patches
    T = prefix + n
    w = torch.zeros(2, 2, T, T)
    w[:, 1] = 1.0 / T
    for t in range(T):
        w[:, 0, t, t] = 1.0
    w[:, 0, 0] = 0.0
    w[:, 0, 0, prefix + cls_target] = 1.0
    for k in range(n):
        w[:, 0, prefix + k] = 0.0
        w[:, 0, prefix + k, prefix + (k + 1) % n] = 1.0
    a, b = ("r", "c") if kind == "image" else ("f", "t")
    tokens = (*grid.prefix, *(f"{a}{i + 1}{b}{j + 1}" for i in range(grid.grid[0])
                              for j in range(grid.grid[1])))
    view = AttentionView("self-attention", "self", tokens, tokens, w,
                         layer_numbers=layer_numbers)
    rollout = AttentionView("self-attention rollout", "self", tokens, tokens, w.mean(1, True),
                            layer_numbers=layer_numbers)
    return AttentionMaps("hand-built", "vit", (view, rollout), patches=grid)


def test_patch_maps_json_and_page() -> None:
    maps = _patch_maps("audio", layer_numbers=(3, 4))
    data = _embedded(render_viewer(maps))
    assert data["patches"]["grid"] == [2, 3] and data["patches"]["flip_rows"] is True
    assert data["patches"]["prefix"] == ["[CLS]", "[DIST]"]
    assert base64.b64decode(data["patches"]["png"]).startswith(b"\x89PNG")
    assert data["views"][0]["layers"] == [3, 4] and "heads" not in data["views"][0]
    text = _embedded(render_viewer(_maps(("a", "b"))))  # text maps: as before
    assert "patches" not in text and "layers" not in text["views"][0]
    page = render_viewer(maps)
    assert not re.search(r"https?:|ftp:|//[\w.-]+\.[a-z]{2,}", page)
    assert not re.search(r"\b(src|href)\s*=|url\(|fetch\(|XMLHttpRequest", page)
    with pytest.raises(ValueError, match="patch maps need self-attention over 8 tokens"):
        AttentionMaps("m", "vit", _maps(("a", "b")).views, patches=maps.patches)


def _wait_ready(page: Page) -> None:
    deadline = time.monotonic() + 10
    while not page.js("window.attnViewer.ready"):
        assert time.monotonic() < deadline, "the picture was never decoded"
        time.sleep(0.05)


def _canvas_pixel(page: Page, x: float, y: float) -> list[int]:
    return page.js(
        "Array.from(document.getElementById('patch-canvas').getContext('2d')"
        f".getImageData({x}, {y}, 1, 1).data.slice(0, 3))")


def _patch_pixel(page: Page, token: int) -> list[int]:
    x, y = page.js(f"window.attnViewer.patchCentre({token})")
    return _canvas_pixel(page, x, y)


def _mouse(page: Page, token: int, click: bool = True) -> None:
    x, y = page.js(
        "(() => { const c = document.getElementById('patch-canvas'); c.scrollIntoView();"
        f" const r = c.getBoundingClientRect(), p = window.attnViewer.patchCentre({token});"
        " return [r.left + p[0], r.top + p[1]]; })()")
    page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    if click:
        for kind in ("mousePressed", "mouseReleased"):
            page.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1})


def _blend(colour: str, grey: int = 128, alpha: float = 140 / 255) -> list[int]:
    """The heat colour over the grey picture at the viewer's opacity (0.55 of 255 = 140)."""
    return [round(alpha * c + (1 - alpha) * grey) for c in _hex(colour)]


def _close(got: list[int], want: list[int], tolerance: int = 3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=True))


def test_patch_view_draws_the_grid_and_follows_a_click(page: Page, tmp_path: Path) -> None:
    maps = _patch_maps("image")
    _load(page, tmp_path, maps)
    _wait_ready(page)
    assert page.js("document.getElementById('tokens-panel').hidden") is True
    assert page.js("document.getElementById('patches-panel').hidden") is False
    assert page.js("Array.from(document.querySelectorAll('#prefix-list .cell'),"
                   " e => e.dataset.index)") == ["0"]
    g = page.js("window.attnViewer.patchGeometry()")
    assert (g["width"], g["height"]) == (round(12 * g["sx"]), round(12 * g["sy"]))
    assert page.js("document.getElementById('patch-canvas').style.width") == f"{g['width']}px"
    page.js("(() => { const s = document.getElementById('head-select');"
            " s.value = '0'; s.dispatchEvent(new Event('change')); })()")
    colours = json.loads(re.search(r'"colormap":(\[.*?\])', render_viewer(maps)).group(1))
    top, bottom = _blend(colours[-1]), _blend(colours[0])
    # [CLS] (the query at first) looks at the centre patch (token 5) only
    assert page.js("window.attnViewer.patchGeometry().best") == 5
    assert _close(_patch_pixel(page, 5), top) and _close(_patch_pixel(page, 1), bottom)
    _mouse(page, 3)  # click r1c3: it attends to the next patch, r2c1 (token 4)
    assert page.js("window.attnViewer.state.query") == 3
    assert page.js("window.attnViewer.patchGeometry().best") == 4
    assert _close(_patch_pixel(page, 4), top) and _close(_patch_pixel(page, 5), bottom)
    assert page.js("document.querySelector('#prefix-list .cell').dataset.weight") == "0.0000"
    _mouse(page, 8, click=False)  # hovering shows r3c2 without choosing it
    assert page.js("window.attnViewer.state.peek") == 8
    assert "query r3c2 (hover)" in page.js("document.getElementById('patch-info').textContent")
    assert _close(_patch_pixel(page, 9), top)
    page.hover("h1")
    assert page.js("window.attnViewer.state.peek") is None
    assert page.js("window.attnViewer.patchGeometry().query") == 3
    page.js("document.getElementById('patch-canvas').focus()")
    page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "ArrowDown",
                                         "code": "ArrowDown", "windowsVirtualKeyCode": 40})
    assert page.js("window.attnViewer.state.query") == 6  # r1c3 -> r2c3
    page.js("document.querySelector('#prefix-list .cell').click()")
    assert page.js("window.attnViewer.state.query") == 0
    assert page.errors() == []


def test_spectrogram_patches_are_drawn_frequency_up(page: Page, tmp_path: Path) -> None:
    _load(page, tmp_path, _patch_maps("audio", layer_numbers=(3, 4)))
    _wait_ready(page)
    assert page.js("Array.from(document.querySelectorAll('#layer-select option'),"
                   " e => e.textContent)") == ["layer 3", "layer 4"]
    assert page.js("document.querySelectorAll('#prefix-list .cell').length") == 2
    page.js("(() => { const s = document.getElementById('head-select');"
            " s.value = '0'; s.dispatchEvent(new Event('change')); })()")
    g = page.js("window.attnViewer.patchGeometry()")
    # [CLS] looks at patch (0, 0): the lowest mel bins, drawn at the bottom left (bin 1,
    # frame 1: no other window); mel bin 7, the top row, no window covers: only the picture
    low = _canvas_pixel(page, 1.5 * g["sx"], g["height"] - 1.5 * g["sy"])
    high = _canvas_pixel(page, 1.5 * g["sx"], 0.5 * g["sy"])
    assert _close(low, _blend(json.loads(re.search(
        r'"colormap":(\[.*?\])', render_viewer(_patch_maps("audio"))).group(1))[-1]))
    assert _close(high, [128, 128, 128])
    _mouse(page, 2)  # f1t1, the bottom-left patch: the click finds it
    assert page.js("window.attnViewer.state.query") == 2
    _mouse(page, 7)  # f2t3, the top-right patch
    assert page.js("window.attnViewer.state.query") == 7
    page.js("(() => { const s = document.getElementById('view-select'); s.value = '1';"
            " s.dispatchEvent(new Event('change')); })()")  # the rollout view
    assert "self-attention rollout" in page.js("document.getElementById('subtitle').textContent")
    assert page.js("window.attnViewer.patchGeometry().query") == 7
    assert page.errors() == []


def test_many_patches_leave_out_the_matrix(page: Page, tmp_path: Path) -> None:
    """17 x 17 patches of 2 x 2 (290 tokens): no T x T heatmap, the patch view alone."""
    grid = PatchGrid("image", (17, 17), (2, 2), (2, 2), (34, 34), ("[CLS]",), False,
                     _grey_png(34, 34))
    tokens = ("[CLS]", *(f"r{i}c{j}" for i in range(1, 18) for j in range(1, 18)))
    weights = torch.rand(1, 1, 290, 290, generator=torch.Generator().manual_seed(0)).softmax(-1)
    weights[0, 0, 100] = 0.0
    weights[0, 0, 100, 200] = 1.0  # token 100 (patch r6c15) looks at token 200 alone
    view = AttentionView("self-attention", "self", tokens, tokens, weights)
    _load(page, tmp_path, AttentionMaps("big", "vit", (view,), patches=grid))
    _wait_ready(page)
    assert page.js("document.getElementById('heatmap-panel').hidden") is True
    _mouse(page, 100)
    assert page.js("window.attnViewer.state.query") == 100
    assert page.js("window.attnViewer.patchGeometry().best") == 200
    assert page.errors() == []


def _screenshot(model: str, text: str, target: str | None, out: Path) -> None:
    """docs/viewer.png: the viewer of a real model's maps, as headless Chromium draws it."""
    from attnlab.viz.extract import maps_from_folder  # the maps `attnlab viz` writes

    maps = maps_from_folder(model, text, target)
    cross = [i for i, view in enumerate(maps.views) if view.kind == "cross"]
    binary = chromium_binary()
    if binary is None:
        raise SystemExit("install chromium first (Debian: apt-get install chromium)")
    browser = Browser(binary)
    try:
        page = Page(browser, width=1200, height=700)
        with tempfile.TemporaryDirectory() as tmp:
            page.load(write_viewer(maps, Path(tmp) / "viewer.html"))
            if cross:  # the alignment is the most telling picture of a translation model
                page.js("(() => { const s = document.getElementById('view-select');"
                        f" s.value = '{cross[0]}'; s.dispatchEvent(new Event('change')); }})()")
            page.js("(() => { const s = document.getElementById('layer-select');"
                    " s.value = String(s.options.length - 1);"
                    " s.dispatchEvent(new Event('change')); })()")  # the last layer
            page.hover("#query-list .tok[data-index='2']")
            assert page.errors() == [], page.errors()
            data = page.send("Page.captureScreenshot", {"format": "png"})
        out.write_bytes(base64.b64decode(data["data"]))
    finally:
        browser.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="screenshot of the viewer for docs/")
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--target", default=None)
    args = parser.parse_args()
    _screenshot(args.model, args.text, args.target, args.screenshot)
