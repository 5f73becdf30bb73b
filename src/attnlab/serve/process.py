"""`attnlab serve` as a child process, ready when constructed: what the server's tests and its
load benchmark (`benchmarks/serve_load.py`) drive, and a way to serve from a notebook or script.

    with ServerProcess("runs/lm", "--max-batch", "8") as server:   # 127.0.0.1, a free port
        urllib.request.urlopen(server.url + "/v1/models")
        code = server.stop()                                   # SIGTERM, bounded wait

The server listens on 127.0.0.1; every wait is bounded (start, SIGTERM), and what does not end
on SIGTERM is killed. Its stdout and stderr go to a temporary file, read with `log()`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 90.0  # loading torch on a busy 2-core machine
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m attnlab serve --model FOLDER --port <free> *extra_args` on 127.0.0.1, started
    at construction and ready (GET /health answered) when the constructor returns; its stdout
    and stderr go to a file, read with `log()`."""

    def __init__(self, folder: str | Path, *extra_args: str, threads: int = 1,
                 start_timeout: float = START_TIMEOUT_S) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="attnlab-serve-", suffix=".log",
                                                delete=False)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        self.args = [sys.executable, "-m", "attnlab", "serve", "--model", str(self.folder),
                     "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads),
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
                with urllib.request.urlopen(self.url + "/health", timeout=2.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"attnlab serve not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used (all its threads), from /proc (Linux)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

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
