"""`attnlab` entry point: a table of subcommands, each a typed function in its own module.

One error policy for every command: a user's mistake (`attnlab.errors.UserError`, or a flag
argparse cannot read) is one line `attnlab CMD: error: MESSAGE` and exit code 2; Ctrl-C is
one line and exit code 130 (training commands first save a checkpoint and say how to resume);
anything else is a bug of ours and keeps its traceback.

One thread policy too: `--threads N` sets torch's CPU threads for the command, given before the
command (`attnlab --threads 1 train lm ...`) or after it (`attnlab train lm --threads 1 ...`);
without it torch's own count is capped at the CPUs this process may use (OMP_NUM_THREADS is
kept). Before a command that computes, a busy machine (load average) gives one warning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from attnlab import __version__
from attnlab.cli import (
    average,
    bench,
    classify,
    compare,
    data,
    demo,
    embed,
    embed_compare,
    evaluate,
    generate,
    heads,
    imagine,
    listing,
    positions,
    prepare,
    scaling,
    serve,
    train,
    translate,
    viz,
)
from attnlab.cli.settings import positive_int, user_message
from attnlab.errors import UserError
from attnlab.training.device import (
    available_cores,
    default_threads,
    use_threads,
    warn_if_oversubscribed,
)
from attnlab.training.distributed import CollectiveTimeout, rank_prefix

# name -> (module with `add_arguments(parser)` and `run(args) -> int`, one-line help)
COMMANDS = {
    "list": (listing, "list registered attentions, positions, kernels and model presets"),
    "demo": (demo, "train a translator on the built-in corpus: BLEU, samples, attention map"),
    "train": (train, "train a model: translate, lm (decoder-only), mlm or classify (encoder), "
                     "image (ViT), audio (AST), clip (text-image CLIP)"),
    "classify": (classify, "top-k classes of image or audio files with a ViT / DeiT / AST "
                           "model folder, or zero-shot with CLIP (--labels)"),
    "embed": (embed, "CLIP embeddings of texts and images, and their cosine similarities"),
    "imagine": (imagine, "draw images from captions with a text-to-image folder (DALL-E "
                         "style), optionally reranked by CLIP"),
    "translate": (translate, "translate sentences with a trained model (beam search)"),
    "evaluate": (evaluate, "BLEU / chrF of a trained model with sacreBLEU, by length bucket"),
    "average": (average, "average the last N checkpoints of a run"),
    "generate": (generate, "continue a prompt with a GPT-2 / LLaMA style model folder"),
    "bench": (bench, "efficient attention variants: speed, memory, error; LRA-style accuracy"),
    "viz": (viz, "attention maps of a model on a text, an image or a sound: PNG heatmaps, "
                 "rollout, HTML viewer"),
    "heads": (heads, "score every head for known behaviours (previous token, induction, ...)"),
    "embed-compare": (embed_compare, "how one word's representation moves with its context"),
    "positions": (positions, "plots of positional encodings: sinusoidal, RoPE, ALiBi"),
    "compare": (compare, "measured comparisons: Transformer vs RNN vs CNN on text; "
                         "--family vision: ViT vs a ResNet against the amount of data"),
    "data": (data, "build a real corpus from texts that install offline (Bible: es-en, kjv-web)"),
    "prepare": (prepare, "tokenize a corpus once into memory-mapped shards (data larger than "
                         "memory)"),
    "scaling": (scaling, "scaling laws: LLaMA sizes and MoE trained, L(N) and L(N, D) fitted"),
    "serve": (serve, "serve a model folder over HTTP with OpenAI's API (completions, chat, "
                     "embeddings), continuous batching and a playground"),
}

# Commands whose work is long enough for torch's thread count to matter: they take --threads
# after the command name too, and warn when the machine's load suggests oversubscription.
COMPUTING = frozenset({"demo", "train", "classify", "embed", "prepare", "translate", "evaluate",
                       "generate", "bench", "viz", "heads", "embed-compare", "compare",
                       "imagine", "scaling", "serve"})


class Parser(argparse.ArgumentParser):
    """argparse with the error policy's one line (no usage block) for a flag it cannot read;
    sub-command parsers inherit it."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="attnlab",
        description="Attention and the Transformer: build, train, measure and look inside.",
    )
    parser.add_argument("--version", action="version", version=f"attnlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", dest="global_threads", type=positive_int, default=None,
                        metavar="N", help=threads_help())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
        if name in COMPUTING:
            add_threads_flag(command)
    return parser


def threads_help() -> str:
    return (f"CPU threads torch uses for the command (default here: {default_threads()}, "
            f"torch's own count, or OMP_NUM_THREADS when set, capped at the "
            f"{available_cores()} CPUs this process may use); 1 is often fastest on a machine "
            f"shared with other jobs")


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """--threads on a command and on each of its nested sub-commands (`train lm`, `bench lra`),
    so it may follow the command name. SUPPRESS: a sub-command that is not given the flag sets
    nothing, and the top-level `attnlab --threads N` stays. A parser that has its own --threads
    (bench attention) keeps it."""
    if "--threads" not in parser._option_string_actions:
        parser.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS,
                            metavar="N", help="as `attnlab --threads N`: " + threads_help())
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                add_threads_flag(nested)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    command = f"attnlab {args.command}" + (f" {args.task}" if args.command == "train" else "")
    threads = getattr(args, "threads", None) or args.global_threads  # after the command wins
    try:
        with use_threads(threads) as count:
            if args.command in COMPUTING and not rank_prefix():  # one process, or torchrun's
                warn_if_oversubscribed(count)  # (its load counts the other ranks: no warning)
            return int(args.run(args) or 0)
    except UserError as error:
        print(f"{rank_prefix()}{command}: error: {user_message(error)}", file=sys.stderr)
        return 2
    except CollectiveTimeout as error:  # another rank failed first: its message is the cause
        print(f"{rank_prefix()}{command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{rank_prefix()}{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
