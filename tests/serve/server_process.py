"""Tiny model folders and a real `attnlab serve` subprocess, for the HTTP tests of the server.

    folder = gpt2_folder(tmp_path / "gpt2")              # random gpt2-tiny + byte-level BPE
    with ServerProcess(folder, "--max-batch", "4") as server:
        httpx.get(server.url + "/health")
        code = server.stop()                              # SIGTERM, bounded wait: exit code

Each folder holds random weights of a `*-tiny` preset and a small byte-level tokenizer trained on
fixed text (some of it multi-byte), saved with `save_pretrained` + tokenizer.json, so the same
call builds the same folder. The server listens on 127.0.0.1 at a free port; every wait is
bounded, and `stop()` kills what does not end on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import torch

from attnlab.models import build_model
from attnlab.tokenizers import Tokenizer

TEXT = ["the apple was juicy and red", "apple stock crashed on monday",
        "the farmer sells red apples", "stock prices fell again today",
        "héllo wörld, ça va ? 日本語 テキスト", "the quick brown fox jumps over the lazy dog"] * 4
VOCAB = 300
START_TIMEOUT_S = 90.0  # loading torch on a busy 2-core machine
STOP_TIMEOUT_S = 30.0


def _tokenizer(specials: list[str]) -> Tokenizer:
    return Tokenizer.train_byte_level(TEXT, VOCAB, specials)


def _save(preset: str, path: Path, tokenizer: Tokenizer, **overrides) -> Path:
    torch.manual_seed(0)
    model = build_model(preset, vocab_size=tokenizer.vocab_size, **overrides)
    model.save_pretrained(path)
    tokenizer.save(Path(path) / "tokenizer.json")
    return Path(path)


def gpt2_folder(path: str | Path, **overrides) -> Path:
    """gpt2-tiny, <|endoftext|> = 0 as BOS and EOS (GPT-2's habit); `overrides` change its
    config (e.g. max_seq_len=16384 for requests that stay busy for seconds)."""
    return _save("gpt2-tiny", Path(path), _tokenizer(["<|endoftext|>"]), bos_token_id=0,
                 eos_token_id=0, **overrides)


def llama_folder(path: str | Path) -> Path:
    """llama-tiny, <unk>=0 <s>=1 </s>=2; the tokenizer frames a text with <s> as LLaMA's does."""
    from tokenizers import processors

    tokenizer = _tokenizer(["<unk>", "<s>", "</s>"])
    tokenizer.backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)])
    return _save("llama-tiny", Path(path), tokenizer)


def mamba_folder(path: str | Path) -> Path:
    """mamba-tiny (a recurrent family: a fixed-size state per row of the batch), <|endoftext|>
    = 0 as BOS and EOS."""
    return _save("mamba-tiny", Path(path), _tokenizer(["<|endoftext|>"]), bos_token_id=0,
                 eos_token_id=0)


def t5_folder(path: str | Path) -> Path:
    """t5-tiny, <pad>=0 (decoder start) </s>=1 <unk>=2."""
    return _save("t5-tiny", Path(path), _tokenizer(["<pad>", "</s>", "<unk>"]))


def bert_folder(path: str | Path) -> Path:
    """bert-tiny (encoder-only: embeddings, no completions), [PAD]=0 [MASK] [CLS] [SEP]."""
    return _save("bert-tiny", Path(path), _tokenizer(["[PAD]", "[MASK]", "[CLS]", "[SEP]"]))


def sse_data(lines: Iterable[str]) -> list[Any]:
    """The `data:` payloads of a server-sent event stream, in order: JSON objects, and the
    string "[DONE]" as it comes. Any other non-empty line fails (the format is that strict)."""
    events: list[Any] = []
    for line in lines:
        if not line:
            continue
        assert line.startswith("data: "), f"not an SSE data line: {line!r}"
        payload = line[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m attnlab serve --model FOLDER --port <free> *extra_args` on 127.0.0.1, started
    at construction and ready (GET /health answered) when the constructor returns; its stdout
    and stderr go to a file, read with `log()`."""

    def __init__(self, folder: str | Path, *extra_args: str,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="attnlab-serve-", suffix=".log",
                                                delete=False)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.args = [sys.executable, "-m", "attnlab", "serve", "--model", str(self.folder),
                     "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1",
                     *extra_args]
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env)
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"attnlab serve exited with {self.process.returncode} "
                                   f"before it was ready:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"attnlab serve not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        """SIGTERM, without waiting (a test of the drain watches what follows)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """The exit code; killed (and a TimeoutError) if the process outlives `timeout`."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise TimeoutError(f"attnlab serve did not exit {timeout} s after SIGTERM; "
                               f"killed:\n{self.log()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit code (killed after `timeout` seconds)."""
        self.terminate()
        try:
            return self.wait(timeout)
        finally:
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            try:
                self.stop()
            except TimeoutError:
                pass
        Path(self._log.name).unlink(missing_ok=True)
