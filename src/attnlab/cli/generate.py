"""Generate text with any generating model from a local folder that holds config.json,
model.safetensors (or pytorch_model.bin) and tokenizer.json, written by Hugging Face
`transformers` or by attnlab. A decoder-only model (GPT-2, LLaMA) continues the prompt, streamed
as it is generated; an encoder-decoder (T5, the Transformer, RNN and ConvS2S baselines) reads
the prompt as its input and prints its output. An encoder-only folder (BERT) is refused.

    attnlab generate --model DIR --prompt "Once upon a time" --max-new-tokens 50
    attnlab generate --model DIR --prompt "..." --do-sample --temperature 0.8 --top-p 0.95
    attnlab generate --model T5_DIR --prompt "translate English to German: Hello" --num-beams 4
    attnlab generate --model DIR --prompt "..." --weights int8    # int8 weights: faster on CPU
    attnlab generate --model DIR --prompt "..." --compile         # compiled blocks: faster still
    attnlab generate --model DIR --prompt "..." --compile stack   # one graph per stack: fastest
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnlab.cli.settings import positive_int
from attnlab.errors import ConfigError, FolderError
from attnlab.generation.mixin import DECODER_ONLY, GENERATING_KINDS, model_kind
from attnlab.generation.prompts import source_ids
from attnlab.nn.compile import SCOPES, compile_blocks
from attnlab.nn.quant import WEIGHT_FORMATS, stored_format, with_weights
from attnlab.tokenizers import Tokenizer

# What an encoder-only folder is good for instead (each takes --model DIR).
ENCODER_ONLY_COMMANDS = "`attnlab viz`, `attnlab heads` or `attnlab embed-compare`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder (HF or attnlab) or a llama.cpp .gguf file")
    add_decoding_flags(parser)
    parser.add_argument("--prompt", required=True,
                        help="text to continue (decoder-only) or to read (encoder-decoder)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=50)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass, (0, 1]")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off")
    parser.add_argument("--num-beams", type=positive_int, default=1,
                        help="beam search with this many beams (1 = greedy or sampling)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="beam search: GNMT alpha in ((5 + |Y|) / 6) ** alpha")
    parser.add_argument("--seed", type=int, default=None)


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """--weights, --device and --compile, shared by the decoding commands (generate,
    translate)."""
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default=None,
                        help="weights for decoding: fp32, bf16 (half the bytes to read per "
                             "token), int8 weight-only per channel (a quarter), int4 in groups "
                             "of 32 (an eighth; CPU only); see attnlab.nn.quant. Default: as "
                             "stored (a GGUF file's 4-bit blocks stay 4-bit, the rest fp32)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda or cuda:N; auto (default) = cuda when a GPU is visible "
                             "(a model with int4 weights stays on the CPU)")
    parser.add_argument("--compile", nargs="?", const="blocks", choices=SCOPES, default=None,
                        help="torch.compile before decoding: 'blocks' (the default when the "
                             "flag is given alone; each Transformer block, ~10-20 s once) or "
                             "'stack' (each stack as one graph: faster steps, minutes to "
                             "compile); pays off on long outputs of small models, where per-op "
                             "overhead dominates")


def ready_for_decoding(model: Any, args: argparse.Namespace) -> Any:
    """The model with the --weights, --device and --compile asked for. 4-bit weights run on the
    CPU only: with --device auto they stay there, with cuda it is a ConfigError."""
    from attnlab.training.device import resolve_device

    with_weights(model, args.weights)
    device = resolve_device(args.device)
    if device.type != "cpu" and stored_format(model) == "int4":
        if args.device != "auto":
            raise ConfigError(f"--device {args.device}: int4 weights run on the CPU only "
                              f"(torch's CPU int4 kernel); use --weights bf16, int8 or fp32 "
                              f"on a GPU, or --device cpu")
        device = resolve_device("cpu")
    model.to(device)
    return compile_blocks(model, dynamic=True, scope=args.compile) if args.compile else model


def require_generating(model: Any, folder: str | Path, command: str) -> str:
    """The model's declared kind; a FolderError naming the folder, its kind and the commands
    that fit when it generates nothing."""
    kind = model_kind(model)
    if kind not in GENERATING_KINDS:
        raise FolderError(f"{folder} holds a {type(model).__name__}, an {kind} model: it "
                          f"generates no text, so `attnlab {command}` cannot use it; use it with "
                          f"{ENCODER_ONLY_COMMANDS}")
    return kind


def output_text(tokenizer: Tokenizer, ids: Sequence[int], config: Any) -> str:
    """Generated ids as text: up to the first EOS, without padding and start tokens."""
    ids = list(ids)
    if config.eos_token_id in ids:
        ids = ids[: ids.index(config.eos_token_id)]
    drop = {getattr(config, name, None) for name in ("pad_token_id", "decoder_start_token_id")}
    return tokenizer.backend.decode([i for i in ids if i not in drop], skip_special_tokens=False)


# The names the shared checks (generation/processors.py, beam.py) use -> this command's flags.
FLAG_NAMES = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
              "top_p": "--top-p", "top_k": "--top-k", "repetition_penalty": "--repetition-penalty",
              "beam_size": "--num-beams", "length_penalty": "--length-penalty"}


def check_flags(args: argparse.Namespace) -> None:
    """Every decoding flag, checked by the same rules `generate` applies, before anything is
    loaded or printed; a ConfigError names the flag and the value."""
    from attnlab.generation.beam import check_beam_arguments
    from attnlab.generation.processors import check_settings

    if not args.prompt.strip():
        raise ConfigError(f"--prompt must be non-empty text, got {args.prompt!r}")
    if not args.temperature > 0:  # also without --do-sample: a value no decoding accepts
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    if args.do_sample and args.num_beams > 1:
        raise ConfigError(f"--do-sample needs --num-beams 1 (beam sampling is not supported), "
                          f"got --num-beams {args.num_beams}")
    try:
        check_settings(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       repetition_penalty=args.repetition_penalty)
        check_beam_arguments(args.num_beams, args.length_penalty, args.max_new_tokens)
    except ConfigError as error:
        message = str(error)
        for name, flag in FLAG_NAMES.items():
            if message.startswith(name + " "):
                message = flag + message[len(name):]
        raise ConfigError(message) from None


def run(args: argparse.Namespace) -> int:
    import torch

    from attnlab.generation import stream_text
    from attnlab.io import load_tokenizer
    from attnlab.models.auto import from_pretrained

    check_flags(args)  # nothing is written to stdout before every flag is known to be good
    model = from_pretrained(args.model)
    kind = require_generating(model, args.model, "generate")
    ready_for_decoding(model, args)
    tokenizer = load_tokenizer(args.model)
    settings = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    repetition_penalty=args.repetition_penalty, seed=args.seed)
    if kind == DECODER_ONLY and args.num_beams == 1:  # stream the continuation
        # The prompt is echoed with the first new piece, once the model has accepted the
        # prompt (its length, the context left), so an error is never glued to it.
        pending = args.prompt
        for piece in stream_text(model, tokenizer, args.prompt, **settings):
            sys.stdout.write(pending + piece)
            sys.stdout.flush()
            pending = ""
        sys.stdout.write(pending + "\n")
        return 0
    beams = dict(num_beams=args.num_beams, length_penalty=args.length_penalty)
    if kind == DECODER_ONLY:  # beam search: the whole continuation at once
        prompt = tokenizer.encoding(args.prompt).ids
        out = model.generate(torch.tensor([prompt]), **settings, **beams)
        print(args.prompt + output_text(tokenizer, out[0, len(prompt):].tolist(), model.config))
        return 0
    ids = torch.tensor([source_ids(tokenizer, args.prompt, model.config)])
    out = model.generate(ids, **settings, **beams)  # (1, n) the decoder's output
    print(output_text(tokenizer, out[0].tolist(), model.config))
    return 0
