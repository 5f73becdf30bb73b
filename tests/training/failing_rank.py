"""Run by tests/training/test_distributed.py under torchrun: `attnlab train lm` whose rank 1
raises in its loss at step 2 (a stand-in for any failure of one process)."""

import sys

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from attnlab.cli.main import main
from attnlab.tasks.language_model import LanguageModelTask

calls = {"n": 0}
original = LanguageModelTask.loss


def failing_loss(self, model, batch):
    calls["n"] += 1
    if dist.get_rank() == 1 and calls["n"] == 2:
        raise RuntimeError("rank 1 fails at step 2 on purpose")
    return original(self, model, batch)


LanguageModelTask.loss = failing_loss

if __name__ == "__main__":
    sys.exit(record(main)(sys.argv[1:]))
