"""Attention maps of a model folder on one text, image or sound: per-layer per-head
heatmaps, a grid of all heads, attention rollout (Abnar & Zuidema 2020), the cross-attention
alignment of a translation model, maps.json (the weights with their tokens) and a one-file HTML
viewer.

    attnlab viz --model runs/translate --text "the old farmer sells red apples ." --out viz/
    attnlab viz --model DIR --text "..." --target "..." --out viz/ --layers 1 2 --heads 1
    attnlab viz --model runs/image --image boot.png --out viz/
    attnlab viz --model runs/audio --audio yes.wav --out viz/ --layers 3 4
    attnlab viz --model runs/t2i --text "a large three to the left of a small seven" --out viz/

A text-to-image folder (`attnlab train text2image`) with --text CAPTION draws one image for the
caption (--seed picks it) and writes word_regions.png: for each caption token, which regions of
the generated image attended to it, per layer and on average (the cross-segment attention of
Ramesh et al. 2021), with generated.png.

A ViT / DeiT (--image) or AST (--audio) folder gets rollout.png, the rollout from [CLS] to
every patch over the image or the log-mel spectrogram (frequency up, time right), and
cls_heads_L<n>.png, each head's [CLS] attention over the patches for the --layers (default: the
last); the viewer shows the patches: hover or click one to see what it attends to.

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
    parser.add_argument("--model", required=True,
                        help="model folder: a text model with tokenizer.json, or a ViT / DeiT / "
                             "AST with preprocessor_config.json")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", help="the text (the source of a translator)")
    given.add_argument("--image", metavar="FILE",
                       help="an image file, for a ViT or DeiT model folder")
    given.add_argument("--audio", metavar="FILE",
                       help="a sound file, for an Audio Spectrogram Transformer folder")
    parser.add_argument("--target", default=None,
                        help="encoder-decoders only: target to teacher-force (default: greedy)")
    parser.add_argument("--out", required=True, help="folder for the PNGs, maps.json, index.html")
    parser.add_argument("--layers", type=positive_int, nargs="+", default=None, metavar="L",
                        help="per-head heatmaps for these layers only (1-based; default all; "
                             "--image / --audio: the last)")
    parser.add_argument("--heads", type=positive_int, nargs="+", default=None, metavar="H",
                        help="per-head heatmaps for these heads only (1-based; default all)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML viewer")
    parser.add_argument("--seed", type=int, default=0,
                        help="text-to-image folders: the seed of the image drawn for --text "
                             "(default 0)")


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
    if args.text is None:
        return run_patches(args)
    if folder_model_type(args.model) == "text2image":
        return run_text_to_image(args)
    from attnlab.serialization import atomic_write
    from attnlab.viz.extract import maps_from_folder
    from attnlab.viz.maps import AttentionMaps
    from attnlab.viz.patches import refuse_picture_model
    from attnlab.viz.rollout import rollout_view

    refuse_picture_model(args.model)
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


def run_patches(args: argparse.Namespace) -> int:
    """--image / --audio: rollout.png, cls_heads_L<n>.png, maps.json, index.html."""
    from attnlab.errors import ConfigError
    from attnlab.serialization import atomic_write
    from attnlab.viz import grid
    from attnlab.viz.patches import patch_attention_from_folder, plot_cls_heads, plot_rollout

    flag = "--image" if args.image is not None else "--audio"
    if args.target is not None:
        raise ConfigError(f"--target is for encoder-decoder models on --text; {flag} takes none")
    pa = patch_attention_from_folder(args.model, flag, args.image or args.audio)
    chosen_layers = ([pa.n_layers - 1] if args.layers is None else  # default: the last
                     grid.check_indices([n - 1 for n in args.layers], pa.n_layers, "layers"))
    chosen_heads = grid.check_indices(None if args.heads is None else
                                      [n - 1 for n in args.heads], pa.n_heads, "heads")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_rollout(pa, out / "rollout.png")]
    written += [plot_cls_heads(pa, layer, chosen_heads, out / f"cls_heads_L{layer + 1}.png")
                for layer in chosen_layers]
    layers, heads = embedded(pa.n_layers, pa.n_heads, len(pa.tokens), chosen_layers,
                             chosen_heads, heads_given=args.heads is not None)
    maps = pa.to_maps(layers, heads)
    text = json.dumps(maps.to_json()) + "\n"
    written.append(atomic_write(out / "maps.json", lambda t: Path(t).write_text(text)))
    if not args.no_html:
        written.append(write_html(maps, out / "index.html"))
    g = pa.grid
    print(f"{pa.family}: {pa.n_layers} layers x {pa.n_heads} heads over {g.grid[0]} x "
          f"{g.grid[1]} patches of {g.patch[0]}x{g.patch[1]} at stride {g.stride[0]}x"
          f"{g.stride[1]} (+ {', '.join(g.prefix)})")
    if layers is not None or heads is not None:
        what = [f"layers {[i + 1 for i in layers]}" if layers is not None else "",
                f"heads {[h + 1 for h in heads]}" if heads is not None else ""]
        print(f"maps.json and the viewer hold {' and '.join(w for w in what if w)} only (all "
              f"would pass {MAX_EMBEDDED:,} weights); choose others with --layers / --heads")
    for path in written:
        print(f"wrote {path}")
    return 0


MAX_EMBEDDED = 4_000_000  # attention weights in maps.json / the viewer: about 30 MB of JSON


def embedded(n_layers: int, n_heads: int, tokens: int, layers: list[int], heads: list[int],
             *, heads_given: bool = False) -> tuple[list[int] | None, list[int] | None]:
    """The layers and heads (0-based; None: all) maps.json and the viewer hold: all of them
    when they fit MAX_EMBEDDED weights (with the rollout's one map per layer), else the ones
    --layers / --heads chose (default: the last layer, and as many heads from the first as
    fit); too many even then is a ConfigError naming both flags."""
    from attnlab.errors import ConfigError

    def size(n_l: int, n_h: int) -> int:
        return n_l * (n_h + 1) * tokens * tokens

    if size(n_layers, n_heads) <= MAX_EMBEDDED:
        return None, None
    if not heads_given and size(len(layers), len(heads)) > MAX_EMBEDDED:
        fit = MAX_EMBEDDED // (len(layers) * tokens * tokens) - 1  # - 1: the rollout
        heads = heads[:max(fit, 1)]
    if size(len(layers), len(heads)) > MAX_EMBEDDED:
        raise ConfigError(
            f"--layers / --heads: {len(layers)} layers x {len(heads)} heads over {tokens} tokens "
            f"are {size(len(layers), len(heads)):,} weights, more than the viewer's "
            f"{MAX_EMBEDDED:,}; choose fewer (e.g. --layers {layers[-1] + 1} --heads 1 2)")
    return layers, (None if len(heads) == n_heads else heads)


def folder_model_type(directory: str) -> str | None:
    """config.json's model_type, or None where the folder has none (the text path names it)."""
    from attnlab.errors import MissingFileError
    from attnlab.io import read_config

    try:
        return read_config(directory).get("model_type")
    except MissingFileError:
        return None


def run_text_to_image(args: argparse.Namespace) -> int:
    """--text on a text-to-image folder: generated.png and word_regions.png."""
    import torch

    from attnlab.errors import ConfigError
    from attnlab.tasks.imagine import decode_images, load_pipeline, sample_sequences
    from attnlab.viz import grid
    from attnlab.viz.text_to_image import plot_word_regions, save_image, word_region_attention

    if args.target is not None:
        raise ConfigError("--target is for encoder-decoder models; a text-to-image folder "
                          "takes --text only")
    pipeline = load_pipeline(args.model, what="--model")
    model, c = pipeline.model, pipeline.model.config
    sequence = sample_sequences(pipeline, [args.text], 1, seed=args.seed)  # (1, T)
    with torch.no_grad():
        attentions = model(sequence, output_attentions=True).attentions  # L x (1, H, T, T)
    image = decode_images(pipeline, sequence)[0]  # (C, H, W) uint8
    ids = pipeline.tokenizer.encode_batch([args.text])[0][: c.text_len - 2]
    words = [pipeline.tokenizer.decode([i]).strip() or repr(pipeline.tokenizer.decode([i]))
             for i in ids]
    layers = grid.check_indices(None if args.layers is None else
                                [n - 1 for n in args.layers], c.n_layers, "layers")
    weights = word_region_attention([attentions[i] for i in layers], c.text_len,
                                    (c.grid, c.grid), list(range(1, 1 + len(ids))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown = plot_word_regions(image, weights, words, out / "word_regions.png", caption=args.text,
                              layer_names=[f"layer {i + 1}" for i in layers])
    generated = save_image(image, out / "generated.png")
    print(f"text2image: {c.n_layers} layers x {c.n_heads} heads; {len(words)} caption tokens x "
          f"{c.grid} x {c.grid} image codes ({c.attention_layout} attention), seed {args.seed}")
    for path in (generated, shown):
        print(f"wrote {path}")
    return 0
