"""Fixtures of the server tests: tiny model folders (built once per test process) and a real
`attnlab serve` on gpt2-tiny shared by the tests of one module (stopped at its end)."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_process import (
    bert_folder,
    gpt2_folder,
    llama_folder,
    mamba_folder,
    t5_folder,
)

from attnlab.serve.process import ServerProcess


@pytest.fixture(scope="session")
def serve_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-models")


@pytest.fixture(scope="session")
def gpt2_dir(serve_root) -> Path:
    return gpt2_folder(serve_root / "gpt2-tiny")


@pytest.fixture(scope="session")
def llama_dir(serve_root) -> Path:
    return llama_folder(serve_root / "llama-tiny")


@pytest.fixture(scope="session")
def mamba_dir(serve_root) -> Path:
    return mamba_folder(serve_root / "mamba-tiny")


@pytest.fixture(scope="session")
def t5_dir(serve_root) -> Path:
    return t5_folder(serve_root / "t5-tiny")


@pytest.fixture(scope="session")
def bert_dir(serve_root) -> Path:
    return bert_folder(serve_root / "bert-tiny")


@pytest.fixture(scope="module")
def gpt2_server(gpt2_dir):
    """One server on the gpt2-tiny folder for the whole test module (default limits)."""
    with ServerProcess(gpt2_dir) as server:
        yield server


@pytest.fixture(scope="module")
def bert_server(bert_dir):
    """One server on the bert-tiny folder (encoder-only: embeddings; completions refused)."""
    with ServerProcess(bert_dir) as server:
        yield server
