"""SIGKILL in the middle of a write (issue 16): during a checkpoint, during the final model and
during `attnlab average`, the folder stays loadable or resumable, never half-written.

Each case runs attnlab in a child process whose weight writer (safetensors) is wrapped so that,
at one chosen call, it writes the file, cuts it to half its length and kills its own process
with SIGKILL: a write cut off half-way, at a moment fixed by the call count and the file's
folder, not by timing.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import attnlab
from attnlab.cli.main import main
from attnlab.errors import MissingFileError
from attnlab.training.checkpoint import latest_checkpoint, list_checkpoints

CHILD = r"""
import os, signal, sys
from pathlib import Path

mode, target, argv = sys.argv[1], Path(sys.argv[2]).resolve(), sys.argv[3:]


def half_then_kill(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])  # the write cut off half-way
    os.kill(os.getpid(), signal.SIGKILL)


if mode == "checkpoint":  # the weights of the second checkpoint
    import attnlab.training.checkpoint as module
    real, calls = module.save_model, []

    def save_model(model, filename, metadata=None):
        real(model, filename, metadata=metadata)
        calls.append(filename)
        if len(calls) == 2:
            half_then_kill(filename)

    module.save_model = save_model
else:  # "final" / "average": the weights written into the target folder itself
    import attnlab.io.folder as module
    real = module.save_file

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        if Path(filename).parent.resolve() == target:
            half_then_kill(filename)

    module.save_file = save_file

from attnlab.cli.main import main
sys.exit(main(argv))
"""


def killed(mode: str, target: Path, argv: list[str]) -> None:
    """Run `attnlab ARGV` in a child that kills itself half-way through the write `mode`."""
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(target), *argv],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_during_a_checkpoint_write_leaves_the_last_checkpoint(lm, text, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    killed("checkpoint", out, lm(text, out, "--max-steps", "3"))
    checkpoints = out / "checkpoints"
    assert list(checkpoints.glob(".step_0000002.*.tmp"))  # killed inside the second save
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_0000001"]
    assert latest_checkpoint(checkpoints).name == "step_0000001"
    assert not (out / "config.json").exists()
    assert main(["train", "lm", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert attnlab.from_pretrained(out).config.n_layers == 1
    assert not list(checkpoints.glob(".*.tmp"))  # the next save swept the leftover


def test_sigkill_during_the_final_write_leaves_no_model_and_resumes(lm, text, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    killed("final", out, lm(text, out))
    assert list(out.glob(".model.safetensors.*.tmp"))  # the cut-off write, never renamed
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    with pytest.raises(MissingFileError, match="config.json not found"):
        attnlab.from_pretrained(out)
    assert main(["train", "lm", "--out", str(out), "--resume"]) == 0
    assert attnlab.from_pretrained(out).config.n_layers == 1
    # A finished run resumed for more steps: its old config.json goes before the new final
    # write, so a kill there never leaves it beside weights or metrics it does not describe.
    killed("final", out, ["train", "lm", "--out", str(out), "--resume", "--max-steps", "3"])
    assert not (out / "config.json").exists()
    assert main(["train", "lm", "--out", str(out), "--resume", "--max-steps", "3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert attnlab.from_pretrained(out).config.n_layers == 1


def test_sigkill_during_average_keeps_the_model_loadable(lm, text, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lm(text, out, "--max-steps", "3")) == 0
    weights = sha(out / "model.safetensors")
    killed("average", out, ["average", "--model", str(out), "--last", "2"])
    assert list(out.glob(".model.safetensors.*.tmp"))
    assert sha(out / "model.safetensors") == weights  # the old model, whole
    assert attnlab.from_pretrained(out).config.n_layers == 1
    assert main(["average", "--model", str(out), "--last", "2"]) == 0
    assert sha(out / "model.safetensors") != weights
    assert attnlab.from_pretrained(out).config.n_layers == 1
