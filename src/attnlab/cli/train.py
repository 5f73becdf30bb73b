"""Train a model: `attnlab train translate | lm | mlm | classify | image | audio | clip |
vqvae | text2image`. See `attnlab train TASK --help`.

Every task runs on the one run routine and takes the same run flags, generated from its
settings: --config FILE, --set FIELD=VALUE, --out, --max-steps, --time-budget, --seed,
--device, --precision, --resume, --overwrite. Ctrl-C saves a resumable checkpoint, says how to
resume and exits with 130; `--resume` continues the same run exactly (a change of settings or
data is refused); a folder that holds a run is only replaced with `--overwrite`. The final
model appears in --out only when the run ends well (`training/run_folder.py`).

A task is registered once, in `COMMANDS`: its settings class (the flags come from it), its
task class (run by the one run routine), its help, examples and the summary printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.cli.settings import (  # noqa: F401  (positive_int / positive_float: aliases)
    add_run_flags,
    parse_overrides,
    positive_float,
    positive_int,
)
from attnlab.cli.settings import settings_from_args as settings_of
from attnlab.tasks.audio_classification import AudioClassificationTask, AudioSettings
from attnlab.tasks.classification import ClassificationTask, ClassifySettings
from attnlab.tasks.clip import CLIPSettings, CLIPTask
from attnlab.tasks.image_classification import ImageClassificationTask, ImageSettings
from attnlab.tasks.language_model import LanguageModelTask, LMSettings
from attnlab.tasks.masked_lm import MaskedLMTask, MLMSettings
from attnlab.tasks.text2image import RECIPES as TEXT2IMAGE_RECIPES
from attnlab.tasks.text2image import TextToImageSettings, TextToImageTask
from attnlab.tasks.translation import RECIPES, TranslationSettings, TranslationTask
from attnlab.tasks.vqvae import VQVAESettings, VQVAETask
from attnlab.training.run import run_task


@dataclass(frozen=True)
class TrainCommand:
    settings: type
    task: type
    help: str
    description: str
    epilog: str
    summary: Callable[[dict[str, Any], Any], list[str]]
    recipes: Path | None = None  # a folder of named --config recipes


def translate_summary(m: dict[str, Any], s: TranslationSettings) -> list[str]:
    copy, frequent = m["baselines"]["copy_source"], m["baselines"]["most_frequent_target"]
    kept = m["kept"]
    chosen = (f"the best of {len(m['evaluations'])} validations (step {kept['step']:,}, "
              f"greedy valid BLEU {kept['value']:.2f})" if kept["weights"] == "best"
              else f"the last weights (step {kept['step']:,})")
    verdict = "beats copying the source" if m["beats_copy"] else (
        "does NOT beat copying the source")
    return [f"test BLEU {m['bleu']:.2f}  chrF {m['chrf']:.2f}  ({m['bleu_signature']})",
            f"baselines on the same {m['split']} set: copy the source BLEU {copy['bleu']:.2f} "
            f"chrF {copy['chrf']:.2f}; most frequent training target BLEU "
            f"{frequent['bleu']:.2f}: the model {verdict}",
            f"model: {m['preset']}, vocabulary {m['vocab_size']:,}, max_len {m['max_len']} "
            f"({m['train_pairs_over_max_len']:,} training pairs over it dropped); weights: "
            f"{chosen}",
            f"{m['steps']:,} steps ({m['stopped_by']}) in {m['train_seconds']:.0f}s, "
            f"{m['train_tokens_per_second']:,} target tokens/s; model in {s.out}"]


def lm_summary(m: dict[str, Any], s: LMSettings) -> list[str]:
    test = ("" if m.get("test_loss") is None else
            f"test loss {m['test_loss']:.3f} (perplexity {m['test_perplexity']:.1f}); ")
    return [f"validation loss {m['valid_loss']:.3f} (perplexity {m['valid_perplexity']:.1f}); "
            f"{test}{m['steps']} steps in {m['train_seconds']:.0f}s, "
            f"{m['train_tokens_per_second']:,} tokens/s; "
            f"try `attnlab generate --model {s.out} --prompt ...`"]


def classify_summary(m: dict[str, Any], s: ClassifySettings) -> list[str]:
    test = m.get("test_accuracy")
    lines = [f"validation accuracy {m['valid_accuracy']:.1%}"
             + ("" if test is None else f", test accuracy {test:.1%}")
             + f"; {m['steps']} steps in {m['train_seconds']:.0f}s; model in {s.out}"]
    truncated = m["truncated_texts"]
    if any(truncated.values()):
        lines.append(f"note: texts longer than {m['max_len']} tokens were truncated "
                     f"({', '.join(f'{n} in {split}' for split, n in truncated.items())})")
    return lines


def mlm_summary(m: dict[str, Any], s: MLMSettings) -> list[str]:
    return [f"masked-token accuracy {m['valid_masked_accuracy']:.1%}, loss "
            f"{m['valid_loss']:.3f}; {m['steps']} steps in {m['train_seconds']:.0f}s; "
            f"model in {s.out}"]


def perception_summary(m: dict[str, Any], s: ImageSettings | AudioSettings) -> list[str]:
    kind = "image" if isinstance(s, ImageSettings) else "audio"
    held_out = (f" ({m['speakers']['test']} held-out voices)"
                if m.get("speakers") else "")
    return [f"test accuracy {m['test_accuracy']:.2%}{held_out}, validation accuracy "
            f"{m['valid_accuracy']:.2%} over {len(m['classes'])} classes",
            f"{m['steps']:,} steps ({m['stopped_by']}) in {m['train_seconds']:.0f}s, "
            f"{m['train_examples_per_second']:,.0f} examples/s; {m['params']:,} parameters",
            f"model in {s.out} (confusion_matrix.png, metrics.json); try `attnlab classify "
            f"--model {s.out} FILE` or `attnlab viz --model {s.out} --{kind} FILE`"]


def clip_summary(m: dict[str, Any], s: CLIPSettings) -> list[str]:
    zero_shot = m["zero_shot"]
    probe = (f"zero-shot accuracy {zero_shot['accuracy']:.1%} on {zero_shot['images']}"
             if "accuracy" in zero_shot else f"zero-shot: {zero_shot['skipped']}")
    return [f"test recall@1 / @5: image->text {m['test_image_to_text_recall@1']:.1%} / "
            f"{m['test_image_to_text_recall@5']:.1%}, text->image "
            f"{m['test_text_to_image_recall@1']:.1%} / {m['test_text_to_image_recall@5']:.1%} "
            f"over {m['pairs']['test']:,} test pairs",
            probe,
            f"{m['steps']:,} steps ({m['stopped_by']}) in {m['train_seconds']:.0f}s; "
            f"{m['params']:,} parameters; model in {s.out}; try `attnlab embed --model {s.out} "
            f"--text ... --image FILE` or `attnlab classify --model {s.out} FILE --labels ...`"]


def vqvae_summary(m: dict[str, Any], s: VQVAESettings) -> list[str]:
    return [f"test reconstruction: PSNR {m['test_psnr']:.1f} dB (MSE {m['test_mse']:.4f} on "
            f"the [-1, 1] scale) over {m['examples']['test']:,} images",
            f"codebook: {m['codebook_usage']:.0%} of {m['codebook_size']} codes used on test, "
            f"perplexity {m['test_perplexity']:.1f}; {m['grid'][0]}x{m['grid'][1]} codes per "
            f"image",
            f"{m['steps']:,} steps ({m['stopped_by']}) in {m['train_seconds']:.0f}s; "
            f"{m['params']:,} parameters; model in {s.out} (reconstructions.png); use it with "
            f"`attnlab train text2image --image-tokenizer {s.out}`"]


def text2image_summary(m: dict[str, Any], s: TextToImageSettings) -> list[str]:
    lines = [f"test image loss {m['test_bits_per_code']:.3f} bits per code ({m['grid']}x"
             f"{m['grid']} codes of {m['codes']}); {m['steps']:,} steps ({m['stopped_by']}) in "
             f"{m['train_seconds']:.0f}s; {m['params']:,} parameters"]
    scenes, clip = m.get("scenes"), m.get("clip_score")
    if scenes:
        reranked = (f", CLIP-best of {m['sampled']['samples_per_caption']} "
                    f"{scenes['clip_best_sample']['fully_right']:.1%}"
                    if "clip_best_sample" in scenes else "")
        lines.append(f"scenes read fully right: first sample "
                     f"{scenes['first_sample']['fully_right']:.1%}{reranked} (real test scenes "
                     f"{scenes['real_test_scenes']['fully_right']:.1%}) over "
                     f"{m['sampled']['captions']} test captions")
    if clip:
        lines.append(f"CLIP score: first sample {clip['first_sample']:.3f}, CLIP-best "
                     f"{clip['clip_best_sample']:.3f}, real test images "
                     f"{clip['real_test_images']:.3f}")
    lines.append(f"model in {s.out} (samples.png, metrics.json); try `attnlab imagine --model "
                 f"{s.out} \"a caption\" --out grid.png`")
    return lines


COMMANDS: dict[str, TrainCommand] = {
    "translate": TrainCommand(
        TranslationSettings, TranslationTask,
        help="encoder-decoder translation (Vaswani et al. 2017)",
        description="The encoder-decoder Transformer (or the RNN / ConvS2S baselines) on the "
                    "built-in English -> Veskan corpus (default) or on your parallel corpus "
                    "(--data DIR --src-lang xx --tgt-lang yy, files {train,valid,test}.{xx,yy}; "
                    "or --tsv with {train,valid,test}.tsv).",
        epilog="examples:\n"
               "  attnlab train translate --config demo                     # the `make demo` "
               "recipe\n"
               "  attnlab train translate --max-steps 2000 --time-budget 600  # CPU minutes\n"
               "  attnlab train translate --config wmt14-en-de-base --data wmt14 --src-lang en "
               "--tgt-lang de\n"
               "  attnlab train translate --out runs/translate --resume      # continue after "
               "Ctrl-C",
        summary=translate_summary, recipes=RECIPES),
    "lm": TrainCommand(
        LMSettings, LanguageModelTask,
        help="decoder-only language model on a text file (GPT-2 / LLaMA / Mixtral style)",
        description="Train a GPT-2, LLaMA or Mixtral style model on a UTF-8 text file or the "
                    "built-in World English Bible (--text builtin:web, held out by book) with "
                    "a byte-level BPE (--tokenizer bpe) or one token per character (--tokenizer "
                    "chars); the folder then works with `attnlab generate` and transformers. "
                    "Mixture-of-experts models log their aux loss and expert load.",
        epilog="examples:\n"
               "  attnlab train lm --text input.txt --out runs/lm\n"
               "  attnlab train lm --text shakespeare.txt --tokenizer chars --block-size 256\n"
               "  attnlab train lm --out runs/lm --resume --max-steps 4000\n"
               "  attnlab train lm --text builtin:web --preset mixtral-tiny --out runs/web-moe\n"
               "  attnlab train lm --text builtin:web --preset gpt2-tiny --set moe.experts=8 "
               "--set moe.top_k=1\n"
               "  attnlab generate --model runs/lm --prompt 'ROMEO:'",
        summary=lm_summary),
    "mlm": TrainCommand(
        MLMSettings, MaskedLMTask,
        help="masked-LM pre-training of a BERT-style encoder on a text file",
        description="BERT's masked language modelling (15%: 80% [MASK], 10% random, 10% kept) "
                    "on a UTF-8 text file with a byte-level BPE; the folder is a transformers "
                    "BertForMaskedLM and the starting point of `attnlab train classify --init`.",
        epilog="examples:\n"
               "  attnlab train mlm --text corpus.txt --out runs/mlm\n"
               "  attnlab train classify --data sst2 --init runs/mlm --lr 1e-4 --out runs/ft",
        summary=mlm_summary),
    "classify": TrainCommand(
        ClassifySettings, ClassificationTask,
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
               "  # tokenizer.save_pretrained(DIR), then --init DIR",
        summary=classify_summary),
    "image": TrainCommand(
        ImageSettings, ImageClassificationTask,
        help="image classification with a Vision Transformer (ViT / DeiT)",
        description="A Vision Transformer (Dosovitskiy et al. 2021) on the built-in "
                    "Fashion-MNIST (Debian's dataset-fashion-mnist: 60,000 training and 10,000 "
                    "test images) or 8x8 digits, or on a folder of class folders "
                    "(DIR/train/<class>/*.png|jpg, DIR/test/<class>/...). Random crops and "
                    "flips, label smoothing, AdamW with warmup and cosine decay; writes "
                    "metrics.json, confusion_matrix.png and a folder transformers loads as "
                    "ViTForImageClassification (except the hybrid's, in attnlab's layout). The "
                    "fashion-mnist recipe trains the paper's hybrid ViT (vit-hybrid-fashion); "
                    "--preset vit-fashion is the pure one.",
        epilog="examples:\n"
               "  attnlab train image --config fashion-mnist              # the recipe\n"
               "  attnlab train image --config fashion-mnist --time-budget 600\n"
               "  attnlab train image --data builtin:digits --no-flip --set patch_size=2\n"
               "  attnlab train image --data photos --image-size 64 --set patch_size=8\n"
               "  attnlab classify --model runs/image shirt.png",
        summary=perception_summary, recipes=RECIPES / "image"),
    "audio": TrainCommand(
        AudioSettings, AudioClassificationTask,
        help="audio classification with an Audio Spectrogram Transformer (AST)",
        description="An Audio Spectrogram Transformer (Gong et al. 2021) on the built-in "
                    "spoken words (synthesised with Debian's espeak-ng in many voices, speeds "
                    "and pitches; test voices never occur in training) or on a folder of class "
                    "folders of WAV / FLAC files (DIR/train/<class>/*.wav, DIR/test/<class>/...;"
                    " resampled to 16 kHz). Kaldi log-mel filterbanks, SpecAugment, label "
                    "smoothing; writes metrics.json, confusion_matrix.png and a folder "
                    "transformers loads as ASTForAudioClassification.",
        epilog="examples:\n"
               "  attnlab train audio --config spoken-words               # the recipe\n"
               "  attnlab train audio --data sounds --out runs/sounds\n"
               "  attnlab classify --model runs/audio yes.wav",
        summary=perception_summary, recipes=RECIPES / "audio"),
    "clip": TrainCommand(
        CLIPSettings, CLIPTask,
        help="CLIP: a text and an image encoder trained contrastively on captioned images",
        description="CLIP (Radford et al. 2021) on the built-in digit scenes (\"a large three "
                    "to the left of a small seven\", 20,000 training scenes of scikit-learn "
                    "digits) or emoji (Debian's Noto Color Emoji named in English; test emoji "
                    "unseen), or on a folder of images with DIR/captions.tsv "
                    "(file<TAB>caption). Writes metrics.json (test recall@1/5 both ways, "
                    "zero-shot accuracy on real digits or Fashion-MNIST), "
                    "zero_shot_confusion.png and a folder for `attnlab embed` and "
                    "`attnlab classify --labels`.",
        epilog="examples:\n"
               "  attnlab train clip --config digit-scenes                  # the recipe\n"
               "  attnlab train clip --config emoji\n"
               "  attnlab train clip --data photos --image-size 32 --out runs/photos\n"
               "  attnlab embed --model runs/clip-digits --text \"a large three\" --image x.png\n"
               "  attnlab classify --model runs/clip-digits x.png --labels zero one two three "
               "four five six seven eight nine --template \"a large {}\"",
        summary=clip_summary, recipes=RECIPES / "clip"),
    "vqvae": TrainCommand(
        VQVAESettings, VQVAETask,
        help="VQ-VAE: the discrete image tokenizer of text-to-image",
        description="A VQ-VAE (van den Oord et al. 2017) with an EMA codebook (Razavi et al. "
                    "2019) and dead codes restarted, on the images of the built-in digit scenes "
                    "or emoji, or of a folder with DIR/captions.tsv (the captions are not used "
                    "here). Writes metrics.json (test reconstruction MSE and PSNR, the share of "
                    "the codebook in use and its perplexity), reconstructions.png and the "
                    "folder `attnlab train text2image --image-tokenizer` reads.",
        epilog="examples:\n"
               "  attnlab train vqvae --config digit-scenes                 # the recipe\n"
               "  attnlab train vqvae --config emoji\n"
               "  attnlab train vqvae --data photos --image-size 32 --preset vqvae-emoji "
               "--out runs/vq-photos",
        summary=vqvae_summary, recipes=RECIPES / "vqvae"),
    "text2image": TrainCommand(
        TextToImageSettings, TextToImageTask,
        help="DALL-E-style text-to-image: a Transformer over caption tokens and VQ-VAE codes",
        description="The decoder-only Transformer of DALL-E (Ramesh et al. 2021) over [caption "
                    "tokens ; image codes] on the built-in digit scenes or emoji, or a folder "
                    "with DIR/captions.tsv; images are tokenized once by a VQ-VAE run "
                    "(--image-tokenizer, from `attnlab train vqvae`), copied into the run "
                    "folder. Dense or the paper's row / column / convolutional masks (--set "
                    "attention_layout=dalle). Writes metrics.json (bits per code; for digit "
                    "scenes the share of sampled scenes an independent reader reads fully "
                    "right, with and without CLIP reranking; with --clip, CLIP scores) and "
                    "samples.png.",
        epilog="examples:\n"
               "  attnlab train vqvae --config digit-scenes\n"
               "  attnlab train clip --config digit-scenes\n"
               "  attnlab train text2image --config digit-scenes             # the recipe\n"
               "  attnlab train text2image --config emoji --image-tokenizer runs/vqvae-emoji "
               "--clip runs/clip-emoji\n"
               "  attnlab imagine --model runs/text2image-digit-scenes \"a small five\" "
               "--out five.png",
        summary=text2image_summary, recipes=TEXT2IMAGE_RECIPES),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog's example lines kept as written; the description is wrapped by us."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, command in COMMANDS.items():
        sub = tasks.add_parser(name, help=command.help,
                               description=textwrap.fill(command.description, 78),
                               epilog=command.epilog, formatter_class=HelpFormatter)
        config_help = "a JSON file of these settings"
        if command.recipes is not None:
            shipped = ", ".join(sorted(p.stem for p in command.recipes.glob("*.json")))
            config_help = f"a recipe ({shipped}) or {config_help}"
        add_run_flags(sub, command.settings, config_help)


def settings_from_args(args: argparse.Namespace, command: TrainCommand | None = None):
    """The task's settings from the parsed flags (translate's when no command is given)."""
    if command is None:
        command = COMMANDS["translate"]
        assert command.settings is TranslationSettings
    return settings_of(command.settings, args, command.recipes)


def run(args: argparse.Namespace) -> int:
    command = COMMANDS[args.task]
    settings = settings_from_args(args, command)
    outcome = run_task(command.task(settings), resume=args.resume, overwrite=args.overwrite)
    if "rank" in outcome.metrics:  # another process of a torchrun job: rank 0 reports
        return 130 if outcome.interrupted else 0
    if outcome.interrupted:
        print(f"interrupted at step {outcome.result.step}: resume with "
              f"`attnlab train {args.task} --out {settings.out} --resume`", file=sys.stderr)
        return 130
    for line in command.summary(outcome.metrics, outcome.task.settings):
        print(line)
    return 0
