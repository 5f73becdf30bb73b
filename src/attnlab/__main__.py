"""`python -m attnlab ...`: the CLI, also as torchrun launches it
(`torchrun --nproc_per_node N -m attnlab train lm ...`).

`record` (torch.distributed.elastic) writes an uncaught exception of this process where
torchrun looks for it, so the launcher's summary names the failing rank and its error.
"""

import sys

from torch.distributed.elastic.multiprocessing.errors import record

from attnlab.cli.main import main

if __name__ == "__main__":
    sys.exit(record(main)())
