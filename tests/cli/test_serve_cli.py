"""`attnlab serve` as a command: its flags come from ServeSettings (one per field), bad values
are one line naming the flag and exit 2 before anything is loaded, a port already taken is a
one-line error too, and the settings name the served model."""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

import pytest

from attnlab.cli.main import build_parser, main
from attnlab.cli.settings import flag_name
from attnlab.serve.settings import ServeSettings
from attnlab.training.settings import SettingError

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from server_process import gpt2_folder  # noqa: E402


def test_every_setting_is_a_flag_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    for field in dataclasses.fields(ServeSettings):
        assert flag_name(field.name) in help_text
    for flag in ("--weights", "--device", "--compile", "--threads"):
        assert flag in help_text
    assert "curl" in help_text and "/v1/chat/completions" in help_text


def test_flags_become_settings():
    from attnlab.cli.settings import settings_from_args

    args = build_parser().parse_args(["serve", "--model", "runs/lm", "--port", "9001",
                                      "--max-batch", "4", "--max-model-len", "none",
                                      "--model-name", "mine", "--log-level", "warning"])
    settings = settings_from_args(ServeSettings, args)
    assert (settings.port, settings.max_batch, settings.max_model_len) == (9001, 4, None)
    assert settings.host == "127.0.0.1" and settings.model_id == "mine"


@pytest.mark.parametrize("flags, message", [
    (["--port", "0"], "--port must be a positive integer, got 0"),
    (["--port", "70000"], "--port must be in [1, 65535], got 70000"),
    (["--max-batch", "0"], "--max-batch must be a positive integer, got 0"),
    (["--max-queue", "-1"], "--max-queue must be a non-negative integer, got -1"),
    (["--request-timeout", "0"], "--request-timeout must be a positive number, got 0.0"),
    (["--log-level", "loud"], "--log-level must be one of"),
    (["--max-model-len", "0"], "--max-model-len must be a positive integer, got 0"),
])
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    assert main(["serve", "--model", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_model_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err


def test_missing_folder_is_exit_2(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_a_port_in_use_is_exit_2(tmp_path, capsys):
    folder = gpt2_folder(tmp_path / "gpt2")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(folder), "--port", str(port),
                     "--log-level", "critical"]) == 2
    assert f"--port {port}: could not listen" in capsys.readouterr().err


def test_settings_check_their_values_and_name_the_model(tmp_path):
    with pytest.raises(SettingError, match="model is required"):
        ServeSettings()
    with pytest.raises(SettingError, match="drain_timeout must be a positive number"):
        ServeSettings(model="x", drain_timeout=-1)
    (tmp_path / "my-lm").mkdir()
    assert ServeSettings(model=str(tmp_path / "my-lm")).model_id == "my-lm"
    (tmp_path / "m.gguf").write_bytes(b"")
    assert ServeSettings(model=str(tmp_path / "m.gguf")).model_id == "m"


def test_a_missing_serve_extra_is_named_with_what_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    from attnlab.cli.main import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else find_spec(name, *a))
    assert main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing uvicorn" in err and "pip install 'attnlab[serve]'" in err
