"""`attnlab compare --family vision`: is the Vision Transformer data-hungry? ViT (Dosovitskiy et
al. 2021) and a ResNet (He et al. 2016) with the same number of parameters are trained on 1%,
10% and 100% of Fashion-MNIST's training images for the same wall-clock budget each, on the
one run routine (`attnlab train image`'s task), over several seeds; test accuracy against the
data fraction checks the paper's claim (sec. 4.4, Fig. 3-4: with little data the CNN's
inductive biases win; ViT overtakes only after pre-training on 14M-300M images). Beside it:
inference images/s (both models timed in one alternating loop, medians), training examples/s
of the runs, forward FLOPs per image, parameter bytes and the activation memory of a training
forward (the bytes autograd saves for backward).

results.json is rewritten after every run (atomically): an interrupted study keeps what
finished, and a rerun with the same settings skips those cells. vision_report.py turns it
into results.md, accuracy_vs_data.png and throughput.png.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attnlab.errors import ConfigError, DataError
from attnlab.evaluation.machine import machine_info
from attnlab.models import PRESETS, build_model, get_config
from attnlab.models.resnet import width_matching
from attnlab.serialization import atomic_write
from attnlab.studies.compare.throughput import peak_bytes
from attnlab.version import __version__

ARCHS = ("vit", "resnet")  # the order of every table and plot
FAMILIES = {"vit": ("vit", "deit"), "resnet": ("resnet",)}  # model types each arch accepts
RESULTS = "results.json"


@dataclass
class VisionCompareSettings:
    out: str = "runs/compare-vision"
    data: str = "builtin:fashion-mnist"
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    seeds: int = 3
    seconds: float = 300.0  # training seconds per run (evaluation not counted)
    max_steps: int | None = None  # instead of `seconds`: a step limit (tests; exact, not timed)
    evaluations: int = 5  # validations per run; the best one's weights are tested
    vit_preset: str = "vit-fashion"
    resnet_preset: str = "resnet-fashion"
    match_params: bool = True  # the ResNet's width chosen to match the ViT's parameters
    vit_overrides: dict[str, Any] = field(default_factory=dict)
    resnet_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    flip: bool = True  # random horizontal flips (the task's augmentation; off for digits)
    crop_padding: int = 2
    throughput_batch: int = 256
    throughput_rounds: int = 7
    memory_batch: int = 128

    @classmethod
    def quick(cls, **overrides: Any) -> VisionCompareSettings:
        """Within 15 minutes on 2 CPU cores: one seed, 70-second runs validated twice (6 runs
        of 70 s of training + 30-50 s each of data, validation and the 10,000 test images, then
        about a minute of throughput and memory)."""
        return cls(**{**dict(seeds=1, seconds=70.0, evaluations=2), **overrides})

    def __post_init__(self) -> None:
        fractions = self.fractions
        if not fractions or not all(isinstance(f, int | float) and not isinstance(f, bool)
                                    and 0 < f <= 1 for f in fractions):
            raise ConfigError(f"fractions must be numbers in (0, 1], at least one, got "
                              f"{fractions!r}")
        self.fractions = sorted({float(f) for f in fractions})
        if isinstance(self.evaluations, bool) or not isinstance(self.evaluations, int) or (
                self.evaluations < 2):
            raise ConfigError(f"evaluations must be an integer >= 2 (the best validation's "
                              f"weights are tested), got {self.evaluations!r}")
        for name in ("seeds", "batch_size", "throughput_batch",
                     "throughput_rounds", "memory_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.seconds, int | float) and self.seconds > 0):
            raise ConfigError(f"seconds must be a positive number, got {self.seconds!r}")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(
                self.max_steps, int) or self.max_steps < 1):
            raise ConfigError(f"max_steps must be a positive integer or None, got "
                              f"{self.max_steps!r}")
        for arch in ARCHS:
            preset = self.preset(arch)
            if preset not in PRESETS:
                raise ConfigError(f"{arch}_preset {preset!r} is not a preset")
            model_type = PRESETS[preset].model_class.config_class.model_type
            if model_type not in FAMILIES[arch]:
                raise ConfigError(f"{arch}_preset must be a {'/'.join(FAMILIES[arch])} preset, "
                                  f"got {preset!r} (model type {model_type!r})")
            if not isinstance(getattr(self, f"{arch}_overrides"), dict):
                raise ConfigError(f"{arch}_overrides must be a dict of config fields")

    def preset(self, arch: str) -> str:
        return getattr(self, f"{arch}_preset")


def cell_key(arch: str, fraction: float, seed: int) -> str:
    return f"{arch}-{fraction:g}-s{seed}"


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one seed), min, max and count."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


# -- the two models at equal parameters ------------------------------------------------------------

def model_values(s: VisionCompareSettings, image: tuple[int, int, int],
                 classes: int) -> dict[str, dict[str, Any]]:
    """Each arch's config overrides for the data: size, channels, classes, the user's
    overrides, and the ResNet's width that matches the ViT's parameter count."""
    C, H, _ = image
    data = {"image_size": H, "num_channels": C, "num_labels": classes}
    values = {arch: {**data, **getattr(s, f"{arch}_overrides")} for arch in ARCHS}
    if s.match_params:
        vit_params = count(s.vit_preset, values["vit"])
        resnet = get_config(s.resnet_preset, **values["resnet"])
        config = {f.name: getattr(resnet, f.name) for f in dataclasses.fields(resnet)}
        values["resnet"]["width"] = width_matching(vit_params, **config)
    return values


def count(preset: str, values: dict[str, Any]) -> int:
    """Parameters of a preset with overrides, built on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(preset, **values).parameters())


# -- one training run per cell ---------------------------------------------------------------------

def run_cell(s: VisionCompareSettings, arch: str, values: dict[str, Any], fraction: float,
             seed: int, out: Path) -> dict[str, Any]:
    """Train and test one (arch, fraction, seed) through `attnlab train image`'s task."""
    from attnlab.tasks.image_classification import ImageClassificationTask, ImageSettings
    from attnlab.training.run import run_task

    data_values = ("image_size", "num_channels", "num_labels")
    settings = ImageSettings(
        data=s.data, out=str(out), preset=s.preset(arch), train_fraction=fraction,
        max_steps=s.max_steps or 10**9, time_budget=None if s.max_steps else s.seconds,
        evaluations=s.evaluations, keep="best", seed=seed, batch_size=s.batch_size,
        flip=s.flip, crop_padding=s.crop_padding, save_every=0, keep_last=1, device="cpu",
        precision="fp32",
        model_overrides={k: v for k, v in values.items() if k not in data_values},
    )
    start = time.perf_counter()
    outcome = run_task(ImageClassificationTask(settings), overwrite=True, progress=False)
    if outcome.interrupted:
        raise KeyboardInterrupt
    m = outcome.metrics
    train_examples = m["examples"]["train"]
    seen = m["steps"] * s.batch_size
    return {
        "arch": arch, "preset": s.preset(arch), "fraction": fraction, "seed": seed,
        "test_accuracy": m["test_accuracy"], "valid_accuracy": m["valid_accuracy"],
        "steps": m["steps"], "kept_step": m["kept"]["step"], "stopped_by": m["stopped_by"],
        "train_seconds": m["train_seconds"],
        "train_examples_per_second": m["train_examples_per_second"],
        "train_examples": train_examples, "epochs": round(seen / train_examples, 2),
        "params": m["params"], "wall_seconds": round(time.perf_counter() - start, 1),
        "folder": str(out),
    }


def cell_identity(s: VisionCompareSettings, arch: str, values: dict[str, Any]) -> dict[str, Any]:
    """What a finished cell was trained with: a rerun reuses it only when this is unchanged."""
    identity = {"data": s.data, "preset": s.preset(arch), "model": values,
                "budget": {"max_steps": s.max_steps} if s.max_steps else {"seconds": s.seconds},
                "evaluations": s.evaluations, "batch_size": s.batch_size, "flip": s.flip,
                "crop_padding": s.crop_padding}
    return json.loads(json.dumps(identity))  # as results.json will read back (tuples: lists)


# -- speed and memory ------------------------------------------------------------------------------

def inference_throughput(models: dict[str, nn.Module], image: tuple[int, int, int],
                         batch: int, rounds: int) -> dict[str, dict[str, float]]:
    """Images/s of eval-mode forwards on one batch, the models timed in turn within each round
    (a busy moment of a shared machine hits both), median over rounds."""
    x = torch.randn(batch, *image, generator=torch.Generator().manual_seed(0))  # (B, C, H, W)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()(x)  # warm-up: allocator, kernel choice
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: {"images_per_second": batch / statistics.median(t),
                   "seconds_per_batch": statistics.median(t), "batch": batch, "rounds": rounds}
            for name, t in times.items()}


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after one training forward: every tensor saved by a
    `saved_tensors_hooks` pack, counted once per storage, parameters excluded."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x, labels).loss
    del loss
    return sum(storages.values())


def forward_flops(preset: str, values: dict[str, Any], image: tuple[int, int, int]) -> int:
    """FLOPs of one image's forward (torch's FlopCounterMode; attention through the reference
    kernel, whose matmuls it counts, where the config has a kernel)."""
    fields = {f.name for f in dataclasses.fields(PRESETS[preset].model_class.config_class)}
    model = build_model(preset, **values, **({"kernel": "reference"} if "kernel" in fields
                                             else {})).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *image))
    return int(counter.get_total_flops())


def measure_cost(s: VisionCompareSettings, values: dict[str, dict[str, Any]],
                 image: tuple[int, int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(throughput, memory) per arch, on freshly built models of the runs' configs."""
    torch.manual_seed(0)
    models = {arch: build_model(s.preset(arch), **values[arch]) for arch in ARCHS}
    throughput = inference_throughput(models, image, s.throughput_batch, s.throughput_rounds)
    memory: dict[str, Any] = {}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.memory_batch, *image, generator=g)  # (B, C, H, W)
    labels = torch.randint(0, values["vit"]["num_labels"], (s.memory_batch,), generator=g)
    for arch, model in models.items():
        def step(m: nn.Module = model) -> None:
            m.zero_grad(set_to_none=True)
            m(x, labels).loss.backward()

        memory[arch] = {
            "params": sum(p.numel() for p in model.parameters()),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
            "batch": s.memory_batch,
            "activation_bytes": saved_activation_bytes(model, x, labels),
            "train_step_peak_bytes": peak_bytes(step),
        }
        throughput[arch]["forward_flops_per_image"] = forward_flops(s.preset(arch), values[arch],
                                                                   image)
    return throughput, memory


# -- the study -------------------------------------------------------------------------------------

def read_results(out: Path) -> dict[str, Any]:
    path = out / RESULTS
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); remove it to start the study "
                        "afresh") from None
    return results if isinstance(results, dict) else {}


def write_results(out: Path, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out / RESULTS, lambda t: Path(t).write_text(text, encoding="utf-8"))


def summarise(results: dict[str, Any]) -> None:
    """results["accuracy"][arch][fraction] = spread of the finished seeds' test accuracy."""
    accuracy: dict[str, dict[str, Any]] = {}
    for run in results["runs"].values():
        accuracy.setdefault(run["arch"], {}).setdefault(f"{run['fraction']:g}", []).append(
            run["test_accuracy"])
    results["accuracy"] = {arch: {f: spread(v) for f, v in by.items()}
                           for arch, by in accuracy.items()}


def run_vision_compare(s: VisionCompareSettings) -> dict[str, Any]:
    """Every (seed, fraction, arch) cell not finished before, results.json after each, then
    throughput and memory, then the report."""
    from attnlab.data.images import load_images
    from attnlab.studies.compare.vision_report import write_report

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_images(s.data, seed=0)
    train = splits["train"]
    image = tuple(train.images.shape[1:])  # (C, H, W)
    values = model_values(s, image, len(train.classes))
    identity = {arch: cell_identity(s, arch, values[arch]) for arch in ARCHS}
    earlier = read_results(out).get("runs", {})
    results: dict[str, Any] = {
        "command": " ".join(["attnlab", *sys.argv[1:]]), "settings": asdict(s),
        "machine": machine_info(),
        "versions": {"attnlab": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "data": {"spec": s.data, "image": list(image), "classes": len(train.classes),
                 "examples": {name: len(split.labels) for name, split in splits.items()}},
        "models": {arch: {"preset": s.preset(arch), "values": values[arch],
                          "params": count(s.preset(arch), values[arch])} for arch in ARCHS},
        "runs": {},
    }
    cells = [(arch, f, seed) for seed in range(1, s.seeds + 1) for f in s.fractions
             for arch in ARCHS]
    for i, (arch, fraction, seed) in enumerate(cells, 1):
        key = cell_key(arch, fraction, seed)
        head = f"[{i}/{len(cells)}] {s.preset(arch)} on {fraction:.0%} of the data, seed {seed}"
        old = earlier.get(key)
        if old is not None and old.get("identity") == identity[arch]:
            results["runs"][key] = old
            print(f"{head}: finished earlier, test accuracy {old['test_accuracy']:.2%} "
                  "(skipped)", flush=True)
        else:
            budget = f"{s.max_steps} steps" if s.max_steps else f"{s.seconds:g} s"
            print(f"{head}: training for {budget} ...", flush=True)
            run = run_cell(s, arch, values[arch], fraction, seed, out / "runs" / key)
            results["runs"][key] = {**run, "identity": identity[arch]}
            print(f"{head}: test accuracy {run['test_accuracy']:.2%} after {run['steps']:,} "
                  f"steps ({run['epochs']:g} epochs of {run['train_examples']:,} images, "
                  f"{run['train_examples_per_second']:,.0f} images/s; "
                  f"{run['wall_seconds']:.0f} s in all)", flush=True)
        summarise(results)
        write_results(out, results)
        write_report(results, out)  # a partial report too: an interrupted study has one
    print("measuring inference throughput and memory ...", flush=True)
    results["throughput"], results["memory"] = measure_cost(s, values, image)
    write_results(out, results)
    write_report(results, out)
    return results


def expected_minutes(s: VisionCompareSettings) -> float:
    """A rough duration on 2 CPU cores for Fashion-MNIST: each run's budget plus about 30 s
    (data, test set, saving) and 12 s per validation of 6,000 images, plus a minute of
    throughput and memory measurement."""
    runs = 2 * len(s.fractions) * s.seeds
    return (runs * (s.seconds + 30 + 12 * s.evaluations) + 60) / 60
