"""`attnlab train lm | mlm | classify`: the model-family tasks (GPT-2 / LLaMA language model,
BERT masked-LM pre-training, BERT text classification from scratch or fine-tuned with --init).
They share one flag builder and one runner; each adds its own flags and summary line."""

from __future__ import annotations

import argparse
import sys
import textwrap

from attnlab.cli.train import positive_float, positive_int
from attnlab.models import list_models


def add_family_tasks(tasks) -> None:
    """Add lm, classify and mlm to the `train` sub-commands."""
    add_lm_arguments(tasks)
    add_classify_arguments(tasks)
    add_mlm_arguments(tasks)


def run_family(args: argparse.Namespace) -> int:
    return {"lm": run_lm, "classify": run_classify, "mlm": run_mlm}[args.task](args)


class FamilyHelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                          argparse.RawDescriptionHelpFormatter):
    """Defaults in the flag help; the epilog's example lines kept as written (the description
    is wrapped by `add_family_task`)."""


def add_family_task(tasks, name: str, defaults, presets: list[str], input_flag: str,
                    input_help: str, preset_help: str = "model size",
                    vocab_help: str = "tokenizer vocabulary size",
                    **parser_options) -> argparse.ArgumentParser:
    """A `train` sub-command for a model family task (lm, mlm, classify) with the flags they
    share; the caller adds its own."""
    if "description" in parser_options:
        parser_options["description"] = textwrap.fill(parser_options["description"], 78)
    p = tasks.add_parser(name, formatter_class=FamilyHelpFormatter, **parser_options)
    p.add_argument(input_flag, required=True, help=input_help)
    p.add_argument("--out", default=defaults.out, help="output folder")
    p.add_argument("--preset", default=defaults.preset, choices=presets, help=preset_help)
    p.add_argument("--vocab-size", type=positive_int, default=defaults.vocab_size,
                   help=vocab_help)
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                   help="sequences per batch")
    p.add_argument("--max-steps", type=positive_int, default=defaults.max_steps,
                   help="optimizer steps")
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="stop training after this many seconds")
    p.add_argument("--lr", type=positive_float, default=defaults.lr,
                   help="peak AdamW learning rate")
    p.add_argument("--warmup-steps", type=positive_int, default=defaults.warmup_steps,
                   help="linear warmup steps, then cosine decay to lr/10")
    p.add_argument("--eval-every", type=int, default=defaults.eval_every,
                   help="validate every N steps (0: only at the end)")
    p.add_argument("--save-every", type=int, default=defaults.save_every,
                   help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="random seed (data order, initialisation, dropout)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return p


def add_mlm_arguments(tasks) -> None:
    from attnlab.tasks.masked_lm import MLMSettings

    d = MLMSettings()
    m = add_family_task(
        tasks, "mlm", d, list_models("bert"), "--text", "UTF-8 text file",
        help="masked-LM pre-training of a BERT-style encoder on a text file",
        description="BERT's masked language modelling (15%: 80% [MASK], 10% random, 10% "
                    "kept) on a UTF-8 text file with a byte-level BPE; the folder is a "
                    "transformers BertForMaskedLM and the starting point of "
                    "`attnlab train classify --init`.")
    m.add_argument("--block-size", type=positive_int, default=d.block_size,
                   help="tokens per training window, [CLS] included")
    m.add_argument("--mask-prob", type=float, default=d.mask_prob,
                   help="share of the positions chosen for prediction")


def add_classify_arguments(tasks) -> None:
    from attnlab.tasks.classification import ClassifySettings

    d = ClassifySettings()
    c = add_family_task(
        tasks, "classify", d, list_models("bert"), "--data",
        "folder with train.tsv and valid.tsv (optional test.tsv), one `text<TAB>label` a line",
        preset_help="model size when training from scratch (ignored with --init)",
        vocab_help="BPE vocabulary size when training from scratch (ignored with --init)",
        help="text classification with a BERT-style encoder (TSV files), from scratch or "
             "fine-tuning a pre-trained one (--init)",
        description="Classify texts with a BERT-style encoder on DIR/train.tsv and "
                    "DIR/valid.tsv (optional DIR/test.tsv), one `text<TAB>label` per line: "
                    "from scratch with a BPE learnt on train.tsv, or, with --init, fine-tuning "
                    "a pre-trained BERT (all its weights kept, a fresh classification head for "
                    "the labels of train.tsv) with the tokenizer.json of its folder.",
        epilog="examples:\n"
               "  attnlab train classify --data sst2 --out runs/cls\n"
               "  attnlab train mlm --text corpus.txt --out runs/mlm\n"
               "  attnlab train classify --data sst2 --init runs/mlm --lr 1e-4 --out runs/ft\n"
               "  # or a transformers BERT saved locally: model.save_pretrained(DIR) and\n"
               "  # tokenizer.save_pretrained(DIR), then --init DIR")
    c.add_argument("--init", default=None, metavar="DIR",
                   help="fine-tune the BERT in DIR (written by `attnlab train mlm`, or a "
                        "transformers BertForMaskedLM / BertModel folder with tokenizer.json); "
                        "without it, train from scratch")
    c.add_argument("--max-len", type=positive_int, default=d.max_len,
                   help="tokens per text with [CLS] and [SEP]; longer texts are truncated, and "
                        "it is capped at the model's maximum length (with a warning)")


def add_lm_arguments(tasks) -> None:
    from attnlab.tasks.language_model import LMSettings

    d = LMSettings()
    lm = add_family_task(
        tasks, "lm", d, list_models("gpt2") + list_models("llama"), "--text",
        "UTF-8 text file to train on",
        vocab_help="BPE vocabulary size; with --tokenizer chars, the most tokens kept (the "
                   "rarest characters beyond it become <unk>)",
        help="decoder-only language model on a text file (GPT-2 / LLaMA style)",
        description="Train a GPT-2 or LLaMA style model on a UTF-8 text file with a byte-level "
                    "BPE (--tokenizer bpe) or one token per character (--tokenizer chars); the "
                    "folder then works with `attnlab generate` and transformers.",
        epilog="examples:\n"
               "  attnlab train lm --text input.txt --out runs/lm\n"
               "  attnlab train lm --text shakespeare.txt --tokenizer chars --block-size 256\n"
               "  attnlab generate --model runs/lm --prompt 'ROMEO:'")
    lm.add_argument("--tokenizer", default=d.tokenizer, choices=["bpe", "chars"],
                    help="bpe: byte-level BPE, nothing unknown; chars: one token per character "
                         "of the text (characters it lacks become <unk>)")
    lm.add_argument("--block-size", type=positive_int, default=d.block_size,
                    help="tokens of context per training window")
    lm.add_argument("--grad-accum", type=positive_int, default=d.grad_accum,
                    help="micro-batches per optimizer step")
    lm.add_argument("--precision", default=d.precision, choices=["auto", "fp32", "bf16"],
                    help="bf16 autocasts matmuls (fp32 weights); auto = bf16 where the "
                         "hardware computes it natively")


def run_family_task(args: argparse.Namespace, settings_class, train) -> dict | None:
    """Settings from the parsed flags, then train; None (after saying how to resume) when
    Ctrl-C stopped the run."""
    names = set(settings_class.__dataclass_fields__)
    settings = settings_class(**{k: v for k, v in vars(args).items() if k in names})
    metrics = train(settings, resume=args.resume)
    if metrics.get("stopped_by") == "interrupt":
        print(f"interrupted at step {metrics['step']}: resume with the same "
              f"`attnlab train {args.task}` command plus --resume", file=sys.stderr)
        return None
    return metrics


def run_lm(args: argparse.Namespace) -> int:
    from attnlab.tasks.language_model import LMSettings, train_language_model

    metrics = run_family_task(args, LMSettings, train_language_model)
    if metrics is None:
        return 130
    print(f"validation loss {metrics['valid_loss']:.3f} (perplexity "
          f"{metrics['valid_perplexity']:.1f}); {metrics['steps']} steps in "
          f"{metrics['train_seconds']:.0f}s, {metrics['train_tokens_per_second']:,} tokens/s; "
          f"try `attnlab generate --model {args.out} --prompt ...`")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from attnlab.tasks.classification import ClassifySettings, train_classifier

    metrics = run_family_task(args, ClassifySettings, train_classifier)
    if metrics is None:
        return 130
    test = metrics.get("test_accuracy")
    print(f"validation accuracy {metrics['valid_accuracy']:.1%}"
          + ("" if test is None else f", test accuracy {test:.1%}")
          + f"; {metrics['steps']} steps in {metrics['train_seconds']:.0f}s; model in {args.out}")
    truncated = metrics["truncated_texts"]
    if any(truncated.values()):
        print(f"note: texts longer than {metrics['max_len']} tokens were truncated "
              f"({', '.join(f'{n} in {split}' for split, n in truncated.items())})")
    return 0


def run_mlm(args: argparse.Namespace) -> int:
    from attnlab.tasks.masked_lm import MLMSettings, train_masked_lm

    metrics = run_family_task(args, MLMSettings, train_masked_lm)
    if metrics is None:
        return 130
    print(f"masked-token accuracy {metrics['valid_masked_accuracy']:.1%}, loss "
          f"{metrics['valid_loss']:.3f}; {metrics['steps']} steps in "
          f"{metrics['train_seconds']:.0f}s; model in {args.out}")
    return 0
