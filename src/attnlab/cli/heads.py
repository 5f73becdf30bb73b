"""Score every attention head of a model for known behaviours: previous-token, first-token
(attention sink), positional offset, induction, duplicate-token and, in cross-attention, the
diagonal alignment. The probes are seeded random token ids (no text, no tokenizer needed);
definitions and papers: `attnlab.viz.heads`.

    attnlab heads --model runs/lm --out runs/lm/heads     # a saved folder (attnlab or HF)
    attnlab heads --preset gpt2-tiny                      # a preset with random weights

Writes OUT/scores.json and OUT/heads.png (one layers x heads heatmap per behaviour) and prints
the best heads of each behaviour and a per-head table. Layers and heads are numbered from 1:
L1H1 is the first head of the first layer, the same head `attnlab viz` draws in
`<view>_L1H1.png` (in scores.json, row 0 and column 0 of each layers x heads array).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab.cli.settings import positive_int

if TYPE_CHECKING:
    from attnlab.viz.heads import HeadScores

def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model folder (config.json + model.safetensors)")
    source.add_argument("--preset", help="a model preset with random weights, e.g. gpt2-tiny")
    parser.add_argument("--out", default=None,
                        help="output folder (default: MODEL/heads, or runs/heads-PRESET)")
    parser.add_argument("--length", type=positive_int, default=32,
                        help="probe length in tokens (the repeated probe: two halves of "
                             "length / 2); capped at the model's max_seq_len")
    parser.add_argument("--batch", type=positive_int, default=8,
                        help="random sequences averaged per probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=positive_int, default=3,
                        help="best heads listed, as LlHh with layers and heads numbered from 1 "
                             "(as in attnlab viz)")
    parser.add_argument("--radius", type=float, default=1.0,
                        help="cross-attention diagonal band half-width, in source positions")


def format_report(result: HeadScores, top: int) -> str:
    """The best heads per behaviour, then one row per (view, layer, head); layers and heads
    numbered from 1 (`attnlab.viz.heads.head_name`)."""
    from attnlab.viz.heads import head_name

    lines = [f"head scores of {result.model} (probe: {result.probe['batch']} x "
             f"{result.probe['length']} random ids, seed {result.probe['seed']})", ""]
    for view, scores in result.scores.items():
        names = [name for name in scores if name != "offset_value"]
        lines.append(f"{view}: best heads")
        for name in names:
            best = ", ".join(f"{head_name(layer, head)} {score:.2f}"
                             + (f" (d={int(scores['offset_value'][layer, head])})"
                                if name == "offset" else "")
                             for layer, head, score in result.top_heads(view, name, top))
            lines.append(f"  {name.replace('_', '-'):<16} {best}")
        if view in result.chance:
            floor = ", ".join(f"{n.replace('_', '-')} {v:.2f}"
                              for n, v in result.chance[view].items())
            lines.append(f"  (uniform attention scores: {floor})")
        lines.append("")
        header = "  layer head " + " ".join(f"{n.replace('_', '-'):>15}" for n in names)
        lines.append(header)
        L, H = scores[names[0]].shape
        for layer in range(L):
            for head in range(H):
                cells = []
                for name in names:
                    cell = f"{float(scores[name][layer, head]):.3f}"
                    if name == "offset":
                        cell += f" d={int(scores['offset_value'][layer, head])}"
                    cells.append(f"{cell:>15}")
                lines.append(f"  {layer + 1:>5} {head + 1:>4} " + " ".join(cells))
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from attnlab.io import load_tokenizer
    from attnlab.models import build_model
    from attnlab.models.auto import from_pretrained
    from attnlab.serialization import atomic_write
    from attnlab.viz.heads import analyse_heads, plot_head_scores

    if args.model is not None:
        directory = Path(args.model)
        model = from_pretrained(directory).eval()
        tokenizer = load_tokenizer(directory, required=False)
        exclude = tokenizer.special_token_ids() if tokenizer is not None else set()
        name = str(directory)
        out = Path(args.out) if args.out else directory / "heads"
    else:
        model = build_model(args.preset).eval()
        exclude = set()
        name = f"{args.preset} (random weights)"
        out = Path(args.out) if args.out else Path("runs") / f"heads-{args.preset}"
    result = analyse_heads(model, name=name, batch=args.batch, length=args.length,
                           seed=args.seed, exclude=exclude, radius=args.radius)
    print(format_report(result, args.top))
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.to_json(), indent=1) + "\n"
    atomic_write(out / "scores.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    png = plot_head_scores(result, out / "heads.png")
    print(f"wrote {out / 'scores.json'} and {png}")
    return 0
