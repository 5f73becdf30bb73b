"""Run-level settings every training task shares, declared once with their help text.

A task's settings dataclass extends `RunSettings`; each field is declared with `setting(default,
help, choices=...)`, so the command line (`attnlab.cli.settings`) reads the flag, its type,
its help and its default from here and nothing is written twice. Validation raises
`SettingError` (a `ConfigError`) that names the field; the CLI shows it under the flag's name.
A field that names input files or folders is declared `setting(..., data=True)`: the run folder
records a fingerprint of what it names (`training/run_folder.py`), so `--resume` notices data
that changed under the same path.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from attnlab.errors import ConfigError, MissingFileError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
STRATEGY_CHOICES = ("ddp", "fsdp")
KEEP_CHOICES = ("last", "best")
SETTINGS_NAME = "train_settings.json"
# What may differ when a run is resumed: how long it goes on, and where and how it runs (on
# another number of processes, grad_accum follows: training/run.py with_grad_accum_for).
RESUMABLE_CHANGES = ("max_steps", "time_budget", "device", "strategy", "compile",
                     "activation_checkpointing", "collective_timeout")


class SettingError(ConfigError):
    """A setting outside what it accepts. `field` is the dataclass field, so the CLI can name
    the flag (`--max-steps`) where Python users see the field (`max_steps`)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
            default_factory: Any = dataclasses.MISSING, flag: bool = True,
            data: bool = False) -> Any:
    """A dataclass field with its help text (and the values it accepts, for the help);
    `flag=False` keeps it off the command line (e.g. model_overrides, set with --set);
    `data=True` marks a path of input data (a file, or a folder of files) that the run folder
    fingerprints."""
    metadata = {"help": help, "choices": choices, "flag": flag, "data": data}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def data_fields(cls: type) -> list[str]:
    """The fields of a settings class declared `data=True` (paths of input data)."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("data")]


def choices_of(f: dataclasses.Field) -> list[str] | None:
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


# -- checks, each naming the field ----------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_ints(obj: Any, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not _is_int(value) or value <= 0:
            raise SettingError(name, f"{name} must be a positive integer, got {value!r}")


def check_non_negative_ints(obj: Any, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not _is_int(value) or value < 0:
            raise SettingError(name, f"{name} must be a non-negative integer, got {value!r}")


def check_positive_numbers(obj: Any, names: Iterable[str], *, allow_none: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            expected = "a positive number or none" if allow_none else "a positive number"
            raise SettingError(name, f"{name} must be {expected}, got {value!r}")


def check_choice(obj: Any, name: str, choices: Iterable[str], what: str = "one of") -> None:
    value, allowed = getattr(obj, name), list(choices)
    if value not in allowed:
        raise SettingError(name, f"{name} must be {what} {allowed}, got {value!r}")


def check_range(obj: Any, name: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = True) -> None:
    """low <= value < high by default; `low_open` / `high_open` exclude the ends."""
    value = getattr(obj, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        (value > low if low_open else value >= low) and (value < high if high_open else
                                                           value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise SettingError(name, f"{name} must be in {interval}, got {value!r}")


@dataclass
class RunSettings:
    """What every training run has, whatever the task; saved in `train_settings.json`."""

    out: str = setting("runs/run", "output folder (model, checkpoints, metrics)")
    max_steps: int = setting(1000, "optimizer steps (the recipe's length; the result does not "
                                   "depend on machine speed)")
    time_budget: float | None = setting(None, "also stop after this many seconds of training "
                                              "(none: no time limit)")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    clip_norm: float | None = setting(1.0, "clip the gradient norm to this (none: no clipping)")
    eval_every: int = setting(0, "validate every N steps (0: only at the end)")
    evaluations: int = setting(0, "also validate this many times, evenly over the planned "
                                  "steps (--max-steps, or what --time-budget allows at the "
                                  "measured speed); 0: only --eval-every")
    keep: str = setting("last", "weights written at the end: last, or best by the task's "
                                "validation metric (training/best.py)", choices=KEEP_CHOICES)
    patience: int = setting(0, "stop early after this many evaluations in a row without a "
                               "better validation metric (0: never)")
    save_every: int = setting(500, "checkpoint every N steps (0: only at the end)")
    keep_last: int = setting(3, "checkpoints kept")
    seed: int = setting(1, "random seed (data order, initialisation, dropout)")
    device: str = setting("auto", "cpu, cuda or cuda:N; auto = cuda when a GPU is visible")
    precision: str = setting("fp32", "bf16 autocasts matmuls (fp32 weights); fp16 too, with a "
                                     "scaled loss (GradScaler; for GPUs before Ampere); auto = "
                                     "bf16 where the CPU/GPU computes it natively (AMX, "
                                     "AVX512-BF16, Ampere+)", choices=PRECISION_CHOICES)
    strategy: str = setting("ddp", "with several processes (torchrun): ddp replicates the model "
                                   "and averages gradients; fsdp (FSDP2) shards parameters, "
                                   "gradients and optimizer state per Transformer block",
                            choices=STRATEGY_CHOICES)
    activation_checkpointing: bool = setting(False, "recompute each Transformer block's "
                                                    "activations in the backward pass: less "
                                                    "memory, ~1/3 more compute")
    compile: bool = setting(False, "torch.compile each Transformer block (the first steps "
                                   "compile; evaluation and decoding stay eager)")
    collective_timeout: float = setting(1800.0, "seconds a process waits for the others "
                                                "(torchrun) before the run fails, naming the "
                                                "wait; covers rank 0's validations")
    model_overrides: dict[str, Any] = setting(
        help="model config overrides (set with --set FIELD=VALUE)", default_factory=dict,
        flag=False)

    def __post_init__(self) -> None:
        check_positive_ints(self, ("max_steps", "grad_accum", "keep_last"))
        check_non_negative_ints(self, ("eval_every", "save_every", "evaluations", "patience"))
        check_choice(self, "keep", KEEP_CHOICES)
        check_positive_numbers(self, ("time_budget", "clip_norm"), allow_none=True)
        if not _is_int(self.seed):
            raise SettingError("seed", f"seed must be an integer, got {self.seed!r}")
        check_choice(self, "precision", PRECISION_CHOICES)
        check_choice(self, "strategy", STRATEGY_CHOICES)
        check_positive_numbers(self, ("collective_timeout",))
        for name in ("activation_checkpointing", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(name, f"{name} must be true or false, "
                                         f"got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not self.device:
            raise SettingError("device", f"device must be auto, cpu, cuda or cuda:N, "
                                         f"got {self.device!r}")
        if not isinstance(self.model_overrides, dict):
            raise SettingError("model_overrides", "model_overrides must be an object of model "
                                                  f"config fields, got {self.model_overrides!r}")


S = TypeVar("S", bound=RunSettings)


def settings_from_dict(cls: type[S], values: dict[str, Any], where: str) -> S:
    """`cls` from a JSON object, naming unknown fields (keys starting with "_" are comments)."""
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    return cls(**values)


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings")
    return values


def load_run_settings(cls: type[S], out: str | Path) -> S:
    """The settings a run in `out` was started with (for --resume and evaluation)."""
    path = Path(out) / SETTINGS_NAME
    if not path.is_file():
        raise MissingFileError(f"{path} not found: {out} holds no run of this task")
    return settings_from_dict(cls, read_json_object(path), str(path))


def settings_differences(saved: RunSettings, given: RunSettings) -> list[str]:
    """Each setting a resume may not change that differs, as "name=saved, got given"."""
    may_change = ("out", *RESUMABLE_CHANGES)  # out: the folder may have moved
    return [f"{f.name}={getattr(saved, f.name)!r}, got {getattr(given, f.name)!r}"
            for f in dataclasses.fields(saved)
            if f.name not in may_change and getattr(saved, f.name) != getattr(given, f.name)]


def resume_refusal(differences: list[str]) -> ConfigError:
    """The one-line refusal of a resume that would change the run (settings or data)."""
    return ConfigError(f"--resume: this run was started with {'; '.join(differences)} (a "
                       f"resumed run keeps its settings and data; only "
                       f"{', '.join(RESUMABLE_CHANGES)} may change; --overwrite starts a new "
                       "run in its place)")


def resumed_settings(saved: S, given: S) -> S:
    """The saved settings with what a resume may change taken from `given`; any other
    difference is refused, all of them named in one line (the run would no longer be the run
    it continues)."""
    differences = settings_differences(saved, given)
    if differences:
        raise resume_refusal(differences)
    return dataclasses.replace(saved, **{k: getattr(given, k)
                                         for k in ("out", *RESUMABLE_CHANGES)})


def load_config(name_or_path: str, cls: type[S], recipes: Path | None = None) -> dict[str, Any]:
    """The settings of a JSON file, or of a shipped recipe by name (from `recipes`), checked
    against `cls`'s fields; keys starting with "_" are comments and dropped."""
    path = Path(name_or_path)
    if not path.is_file() and recipes is not None:
        path = recipes / f"{name_or_path}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in recipes.glob("*.json")) if recipes else []
        raise MissingFileError(
            f"--config {name_or_path!r} is neither a file"
            + (f" nor a recipe; recipes: {', '.join(shipped)}" if recipes else "")
        )
    values = read_json_object(path)
    settings_from_dict(cls, values, str(path))  # validate the names and values now
    return {k: v for k, v in values.items() if not k.startswith("_")}
