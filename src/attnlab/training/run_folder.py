"""Run folders: what a training run keeps in its `--out` folder, and the rules that keep one
run from silently replacing another (issue 16; the discipline of fairseq's and torchtitan's
checkpoint folders, plus a record of what made the run).

A run folder holds, from the start of the run (what `--resume` needs):

    train_settings.json   the run's settings
    run.json              run id (uuid4 hex), task, attnlab version, data fingerprint, and the
                          names of the files the task itself wrote there (labels.json, test.hyp)
    tokenizer.json        the run's tokenizer (and a task's own files, e.g. labels.json)
    checkpoints/          initial/ (the step-0 model: config + weights, the architecture a
                          resume rebuilds), step_NNNNNNN/ (each with the run id), latest

and, only once the run has ended well, its final model: metrics.json, loss_curve.png,
model.safetensors, generation_config.json and config.json, written in that order (each
atomically), config.json last. A folder with a config.json therefore holds a finished model
whose weights, metrics and curve belong together; an interrupted, failed or killed run has no
config.json (unless an earlier, finished stretch of the same run left one, which is removed
before the next final write), so `attnlab generate` does not take it for a model.

The rules (`check_target`, called before anything is read or written):
- a folder "holds a run" when it has any of train_settings.json, run.json, checkpoints/,
  config.json, metrics.json;
- a new run there needs `--overwrite`, which deletes the old run's files whole (only names
  attnlab writes: the ones above, the task's recorded files, `.*.tmp` leftovers of killed
  writes) and refuses, naming them, when the folder holds anything else; deletion starts with
  config.json and ends with run.json / train_settings.json, so a kill half-way leaves a folder
  that still holds a run (and `--overwrite` again finishes the job);
- `--resume` continues it; the data fingerprint (`fingerprint`) is compared like the settings.

The data fingerprint covers every field declared `setting(..., data=True)`: for a file its path,
size and the sha256 of its first MB; for a folder the same for each file directly in it, sorted
by name (data folders are flat: corpus splits, TSVs, a model folder's files).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from attnlab.errors import ConfigError, FolderError
from attnlab.serialization import atomic_write
from attnlab.training.settings import SETTINGS_NAME, RunSettings, data_fields
from attnlab.version import __version__

RUN_NAME = "run.json"
CHECKPOINTS = "checkpoints"
INITIAL = "initial"  # checkpoints/initial: the step-0 model folder
# The final model, in the order it is written (config.json last: it marks a finished run).
FINAL_NAMES = ("metrics.json", "loss_curve.png", "model.safetensors", "generation_config.json",
               "config.json")
RUN_MARKERS = (SETTINGS_NAME, RUN_NAME, CHECKPOINTS, "config.json", "metrics.json")
ROUTINE_NAMES = frozenset({SETTINGS_NAME, RUN_NAME, CHECKPOINTS, "tokenizer.json",
                           *FINAL_NAMES})
# Files earlier attnlab versions wrote into run folders without recording them in run.json.
LEGACY_NAMES = frozenset({"labels.json", "test.hyp", "valid.hyp", "alignment.png", "demo.json",
                          "cross_attention.png"})
FIRST_BYTES = 1 << 20  # the fingerprint hashes the first MB of each file


def holds_run(out: Path) -> list[str]:
    """The names in `out` that show it holds a run (empty: no run there)."""
    return [name for name in RUN_MARKERS if (out / name).exists()]


def read_record(out: Path) -> dict[str, Any] | None:
    """The run's run.json (None for a folder without one, e.g. a run of attnlab < 0.3)."""
    path = out / RUN_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FolderError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        raise FolderError(f"{path}: expected an object with a run_id")
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(out / RUN_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def new_record(task: str, settings: RunSettings | None,
               files: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A new run's record: a fresh id, the task, the data fingerprint of `settings`, and the
    files the task writes beside the routine's."""
    return {"run_id": uuid.uuid4().hex, "task": task, "attnlab_version": __version__,
            "data": fingerprint(settings) if settings is not None else {},
            "files": sorted(files)}


def ours(record: dict[str, Any] | None) -> set[str]:
    """The names in a run folder that attnlab wrote (or may have: legacy runs)."""
    names = set(ROUTINE_NAMES) | set((record or {}).get("files", []))
    return names if record is not None else names | LEGACY_NAMES


def foreign_names(out: Path, record: dict[str, Any] | None) -> list[str]:
    """Names in `out` attnlab did not write there (`.*.tmp` leftovers of killed writes are
    ours)."""
    if not out.is_dir():
        return []
    known = ours(record)
    return sorted(p.name for p in out.iterdir() if p.name not in known
                  and not (p.name.startswith(".") and p.name.endswith(".tmp")))


def task_files(out: Path, foreign: set[str]) -> set[str]:
    """The files the task wrote in `out` beside the routine's: anything but the routine's
    names that was not there before the run (`foreign`)."""
    new = {p.name for p in out.iterdir()} - foreign - set(ROUTINE_NAMES)
    return {n for n in new if not (n.startswith(".") and n.endswith(".tmp"))}


def note_task_files(out: Path, record: dict[str, Any], foreign: set[str]) -> None:
    """Record in run.json the files the task wrote in `out` (`task_files`)."""
    new = task_files(out, foreign)
    if not new <= set(record["files"]):
        record["files"] = sorted(set(record["files"]) | new)
        write_record(out, record)


def check_target(out: Path, *, resume: bool, overwrite: bool, resumable: bool = True) -> None:
    """Refuse a run that would replace the run in `out` by accident: one line saying which
    flag to use. With `overwrite`, refuse now (before any work) when the folder holds files
    attnlab did not write; `remove_run` deletes the old run later."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: "
                          "give one of them")
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out} is a file; expected a folder for the run")
    if resume:
        return
    markers = holds_run(out)
    if markers and not overwrite:
        how = ("add --resume to continue it or --overwrite to replace it" if resumable
               else "add --overwrite to replace it")
        raise FolderError(f"--out {out} already holds a run ({', '.join(markers)}): {how} (or "
                          "choose another --out)")
    if markers:
        foreign = foreign_names(out, read_record(out))
        if foreign:
            raise FolderError(f"--overwrite: {out} also holds {', '.join(foreign)}, which "
                              "attnlab did not write; move them away or choose another --out "
                              "(nothing was deleted)")


def remove_run(out: Path) -> None:
    """Delete the run in `out` whole (config.json first, its record last); only names attnlab
    writes, after checking again that nothing else is there."""
    if not holds_run(out):
        return
    record = read_record(out)
    foreign = foreign_names(out, record)
    if foreign:
        raise FolderError(f"--overwrite: {out} also holds {', '.join(foreign)}, which attnlab "
                          "did not write; move them away or choose another --out")
    last = (RUN_NAME, SETTINGS_NAME)
    names = sorted((p.name for p in out.iterdir() if p.name not in last),
                   key=lambda name: name != "config.json")
    for name in [*names, *last]:
        remove_path(out / name)


def remove_path(path: Path) -> None:
    """Delete a file, a link (never what it points to) or a folder with what it holds."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- the data fingerprint ---------------------------------------------------------------------

def _file_print(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        head = f.read(FIRST_BYTES)
    return {"size": path.stat().st_size, "sha256_first_mb": hashlib.sha256(head).hexdigest()}


BUILTIN = "builtin:"  # the prefix of a data setting naming a built-in set


def describe(path: Path) -> dict[str, Any]:
    """Size and first-MB hash of a file, or of each file directly in a folder."""
    if path.is_file():
        return {"path": str(path), **_file_print(path)}
    if path.is_dir():
        return {"path": str(path), "files": {p.name: _file_print(p)
                                             for p in sorted(path.iterdir()) if p.is_file()}}
    return {"path": str(path), "missing": True}


def fingerprint(settings: RunSettings) -> dict[str, Any]:
    """{field: description} of each data field that names a path (a built-in set,
    "builtin:NAME", is the same data wherever it runs: it is recorded by its name)."""
    return {name: describe(Path(value)) for name in data_fields(type(settings))
            if (value := getattr(settings, name)) and not str(value).startswith(BUILTIN)}


def _change(where: str, before: dict[str, Any], now: dict[str, Any]) -> str | None:
    if before["size"] != now["size"]:
        return f"data {where} changed (size {before['size']} -> {now['size']})"
    if before["sha256_first_mb"] != now["sha256_first_mb"]:
        return f"data {where} changed (same size, other bytes in its first MB)"
    return None


def fingerprint_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Each way the data `now` differs from what the run was started on, as a phrase."""
    found: list[str] = []
    for name in sorted(set(saved) & set(now)):
        before, after = saved[name], now[name]
        where = before["path"]
        if after.get("missing"):
            found.append(f"data {where} is gone")
        elif "files" in before and "files" in after:
            old, new = before["files"], after["files"]
            for file in sorted(set(old) | set(new)):
                if file not in new:
                    found.append(f"data {where}/{file} is gone")
                elif file not in old:
                    found.append(f"data {where}/{file} is new")
                elif change := _change(f"{where}/{file}", old[file], new[file]):
                    found.append(change)
        elif ("files" in before) != ("files" in after):
            found.append(f"data {where} changed (a file now, a folder before, or the reverse)")
        elif not before.get("missing") and (change := _change(where, before, after)):
            found.append(change)
    return found
