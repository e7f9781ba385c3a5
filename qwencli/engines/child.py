"""The engine as a child process: started in its own process group with its log in a file, waited for
until its health endpoint answers, stopped with the whole group (vLLM forks workers per GPU: killing
only the parent would leave them holding GPU memory), and reported with its log's tail when it dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from ..errors import QwenError

#: vLLM's and SGLang's servers both answer GET /health with 200 once the model is loaded.
HEALTH_PATH = "/health"
STOP_GRACE_SECONDS = 15.0
TAIL_LINES = 20


class EngineFailed(QwenError):
    """The engine died, or never became ready."""


class EngineChild:
    def __init__(self, argv: tuple[str, ...], env: dict[str, str], log_path: Path, base_url: str):
        self.argv = argv
        self.log_path = log_path
        self.base_url = base_url
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 — lives as long as the child
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one killpg reaches every worker
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=lines)).rstrip()
        except OSError:
            return ""

    def crashed(self) -> EngineFailed | None:
        """The error to report when the child has exited, else None."""
        code = self.process.poll()
        if code is None:
            return None
        name = Path(self.argv[0]).name
        return EngineFailed(
            f"{name} exited with status {code}; the last lines of its log ({self.log_path}):\n{self.tail()}",
            f"the whole log: {self.log_path}",
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + HEALTH_PATH, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float, *, progress: bool = True) -> float:
        """Seconds it took; EngineFailed when the child dies or `timeout` passes first."""
        start = time.monotonic()
        shown = -1
        while True:
            failed = self.crashed()
            if failed is not None:
                raise failed
            if self.healthy():
                if progress and shown >= 0:
                    sys.stderr.write("\n")
                return time.monotonic() - start
            waited = time.monotonic() - start
            if waited > timeout:
                if progress and shown >= 0:
                    sys.stderr.write("\n")
                raise EngineFailed(
                    f"{Path(self.argv[0]).name} did not answer {self.base_url}{HEALTH_PATH} within {timeout:g} s;"
                    f" the last lines of its log:\n{self.tail()}",
                    "a large model can take longer to load: raise --start-timeout",
                )
            if progress and int(waited) != shown:
                shown = int(waited)
                sys.stderr.write(f"\rwaiting for {Path(self.argv[0]).name} to load the model… {shown} s")
                sys.stderr.flush()
            time.sleep(0.2)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; the child's exit status."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Workers the engine forked may outlive it: the group goes too (no orphan holds GPU memory).
        _signal_group(self.process.pid, signal.SIGKILL)
        self._log.close()
        return self.process.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
