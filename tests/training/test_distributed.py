"""Two processes under torchrun (gloo, CPU) train exactly as one process with the same global
batch: DDP and FSDP2, `train lm` and `train translate`, resume across process counts, and a
rank that fails. Each torchrun job is a real `python -m torch.distributed.run -m attnlab ...`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import attnlab
from attnlab.cli.main import main
from attnlab.training.checkpoint import STATE_NAME, latest_checkpoint

HERE = Path(__file__).parent
NO_DROPOUT = ["--set", "dropout=0.0", "--set", "attention_dropout=0.0"]


def torchrun(nproc: int, args: list[str], *, script: str | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N -m attnlab ARGS` (or a script), one thread per
    process (torchrun's own default for N > 1)."""
    target = [script] if script else ["-m", "attnlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", str(nproc), *target, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def losses(out: Path) -> list[float]:
    state = torch.load(latest_checkpoint(out / "checkpoints") / STATE_NAME, weights_only=True)
    return [h["loss"] for h in state["history"]]


def weight_gap(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def lm_args(text: Path, out: Path, *extra: str) -> list[str]:
    # warmup longer than the run: the lr of step k does not depend on --max-steps, so a run
    # stopped at step 3 and resumed to 6 follows the schedule of an uninterrupted run
    return ["train", "lm", "--text", str(text), "--out", str(out), "--block-size", "16",
            "--batch-size", "4", "--vocab-size", "300", "--warmup-steps", "100",
            "--lr", "3e-3", "--save-every", "3", *NO_DROPOUT, *extra]


def translate_args(out: Path, *extra: str) -> list[str]:
    # No biases: a key projection's bias has a gradient that is zero in exact arithmetic, so
    # only rounding noise, which Adam (eps 1e-9) turns into a full step whose sign depends on
    # the order of the sums (FSDP averages shards in another order than one process adds).
    return ["train", "translate", "--out", str(out), "--preset", "transformer-tiny",
            "--set", "bias=false",
            "--builtin-train-size", "300", "--builtin-valid-size", "20",
            "--builtin-test-size", "8", "--vocab-size", "300", "--max-tokens", "400",
            "--max-len", "48",
            "--keep", "last", "--evaluations", "0", "--save-every", "3", *NO_DROPOUT, *extra]


@pytest.fixture(scope="module")
def lm_reference(tmp_path_factory) -> tuple[Path, Path]:
    """One process, grad_accum 2, 6 steps: what 2 processes with grad_accum 1 must match."""
    root = tmp_path_factory.mktemp("lm")
    text = root / "text.txt"
    words = "the cat sat on a warm mat while the dog ran after a red ball".split()
    lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(9)) for i in range(160)]
    text.write_text("\n".join(lines) + "\n")
    out = root / "one"
    assert main(["--threads", "1", *lm_args(text, out, "--max-steps", "6",
                                            "--grad-accum", "2")]) == 0
    return text, out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_lm_as_one(lm_reference, tmp_path, strategy):
    text, reference = lm_reference
    out = tmp_path / strategy
    ok(torchrun(2, lm_args(text, out, "--max-steps", "6", "--strategy", strategy)))
    assert losses(out)[:5] == pytest.approx(losses(reference)[:5], abs=1e-5)
    assert weight_gap(out, reference) < 1e-5


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_translate_as_one(tmp_path, strategy):
    reference = tmp_path / "one"
    assert main(["--threads", "1", *translate_args(reference, "--max-steps", "5",
                                                   "--grad-accum", "2")]) == 0
    out = tmp_path / strategy
    ok(torchrun(2, translate_args(out, "--max-steps", "5", "--strategy", strategy)))
    assert losses(out) == pytest.approx(losses(reference), abs=1e-5)
    assert weight_gap(out, reference) < 1e-5
    shards = sorted(p.name for p in (out / "checkpoints" / "step_0000005" / "state").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    # the final folder is the usual one-file model: it loads and translates as after 1 process
    model = attnlab.from_pretrained(out)
    again = attnlab.from_pretrained(reference)
    ids = torch.tensor([[5, 6, 7, 2]])
    assert torch.equal(model.generate(ids, max_new_tokens=5), again.generate(ids, max_new_tokens=5))


def test_resume_two_processes_on_one_and_one_on_two(lm_reference, tmp_path):
    text, reference = lm_reference
    two_then_one = tmp_path / "two_then_one"
    ok(torchrun(2, lm_args(text, two_then_one, "--max-steps", "3", "--strategy", "fsdp")))
    assert main(["--threads", "1", *lm_args(text, two_then_one, "--max-steps", "6",
                                            "--resume")]) == 0
    one_then_two = tmp_path / "one_then_two"
    assert main(["--threads", "1", *lm_args(text, one_then_two, "--max-steps", "3",
                                            "--grad-accum", "2")]) == 0
    ok(torchrun(2, lm_args(text, one_then_two, "--max-steps", "6", "--grad-accum", "2",
                           "--resume")))
    for out in (two_then_one, one_then_two):
        assert losses(out) == pytest.approx(losses(reference), abs=1e-5)
        assert weight_gap(out, reference) < 1e-5


def test_a_failing_rank_ends_the_job_naming_it(lm_reference, tmp_path):
    text, _ = lm_reference
    out = tmp_path / "fails"
    result = torchrun(2, lm_args(text, out, "--max-steps", "6", "--save-every", "1",
                                 "--collective-timeout", "30"),
                      script=str(HERE / "failing_rank.py"), timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 1 fails at step 2 on purpose" in output
    assert "rank: 1" in output or "[rank 1]" in output  # torchrun's summary names it
    assert latest_checkpoint(out / "checkpoints").name == "step_0000001"
    assert not (out / "checkpoints" / "step_0000002").exists()
    assert not (out / "model.safetensors").exists()


def test_masked_lm_with_an_unused_pooler_trains_under_ddp(lm_reference, tmp_path):
    """BERT's pooler gets no gradient from the masked-LM loss: DDP must not wait for it."""
    text, _ = lm_reference
    out = tmp_path / "mlm"
    ok(torchrun(2, ["train", "mlm", "--text", str(text), "--out", str(out), "--max-steps", "3",
                    "--vocab-size", "300", "--batch-size", "4", "--save-every", "0"]))
    assert (out / "model.safetensors").is_file()



def _wait_alone(rank: int, port: int, folder: str) -> None:
    """Rank 0 waits at a barrier that rank 1 never reaches (it only sleeps)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from attnlab.training.distributed import CollectiveTimeout, process_group

    with process_group(torch.device("cpu"), timeout_s=3.0) as ranks:
        if rank == 1:
            time.sleep(8)
            return
        try:
            ranks.barrier("the test's lonely barrier")
        except CollectiveTimeout as error:
            Path(folder, "error.txt").write_text(str(error))


def test_a_rank_that_never_comes_is_a_named_timeout_not_a_hang(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    torch.multiprocessing.spawn(_wait_alone, args=(port, str(tmp_path)), nprocs=2)
    message = (tmp_path / "error.txt").read_text()
    assert message.startswith("rank 0: the test's lonely barrier waited more than the "
                              "collective timeout (3 s, --collective-timeout)")
    assert time.perf_counter() - start < 60


def _sgd_step(model: torch.nn.Module, parallel, batches, grad_accum: int) -> None:
    """One plain SGD step (lr 1, no clipping): the weights move by exactly the gradient, so a
    gradient summed instead of averaged over the ranks would show (Adam would hide it)."""
    from attnlab.training.trainer import Trainer, TrainerConfig

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, optimizer, lambda step: 1.0, batches,
                      lambda m, b: (m(b["input_ids"], labels=b["input_ids"]).loss,
                                    b["input_ids"].numel() - b["input_ids"].size(0)),
                      TrainerConfig(max_steps=1, grad_accum=grad_accum, clip_norm=None,
                                    progress=False), parallel=parallel)
    trainer.train_step()


def _tiny_gpt() -> torch.nn.Module:
    from attnlab.models import build_model

    torch.manual_seed(0)
    return build_model("gpt2-tiny", dropout=0.0, attention_dropout=0.0)


def _one_sgd_step_on_two(rank: int, port: int, folder: str, strategy: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from safetensors.torch import save_model

    from attnlab.data.rank_share import RankShare
    from attnlab.data.synthetic import RandomWindows
    from attnlab.training.distributed import process_group
    from attnlab.training.parallelize import parallelize

    with process_group(torch.device("cpu")) as ranks:
        model = _tiny_gpt()
        parallel = parallelize(model, ranks, torch.device("cpu"), strategy=strategy)
        _sgd_step(model, parallel, RankShare(RandomWindows(1000, 2, 16), rank, 2, 1), 1)
        with parallel.full_model() as full:
            if full is not None:
                save_model(full, str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_gradients_are_averaged_over_ranks_not_summed(tmp_path, strategy):
    """The regression test for FSDP2 on gloo averaging (pytorch #162338) and for our scaling:
    2 processes' SGD step equals 1 process's over the same two micro-batches."""
    from attnlab.data.synthetic import RandomWindows
    from attnlab.training.parallelize import Parallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_one_sgd_step_on_two, args=(port, str(tmp_path), strategy),
                                nprocs=2)
    reference = _tiny_gpt()
    _sgd_step(reference, Parallel(reference, reference), RandomWindows(1000, 2, 16), 2)
    moved = load_file(tmp_path / "model.safetensors")
    for name, value in reference.state_dict().items():
        if name in moved:  # a tied weight is stored once
            torch.testing.assert_close(moved[name], value, rtol=0, atol=1e-6, msg=name)
