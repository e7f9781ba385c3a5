"""The real `qwen` in other processes, for end-to-end tests: `qwen serve` in the background and
the REPL on a pseudo-terminal; `qwen eval` runs, their `--json` and journals, and a Ctrl-C once
a journal holds a question."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.models import ROOT

START_TIMEOUT = 90.0

QWEN = [sys.executable, "-m", "qwencli"]


def run_qwen(*args: str, input: bytes | str | None = None, timeout: float = 120, env: dict | None = None,
             **kwargs) -> subprocess.CompletedProcess:
    """`qwen ARGS…` as a real subprocess, stdin from `input` (or /dev/null), bytes out."""
    if isinstance(input, str):
        input = input.encode()
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*QWEN, *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=full_env,
        cwd=kwargs.pop("cwd", ROOT),
        **kwargs,
    )


def start_server(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`qwen serve ARGS --port 0` in the background; returns it and its base URL once healthy."""
    import httpx

    proc = subprocess.Popen([*QWEN, "serve", *args, "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, **(env or {})}, text=True)
    deadline = time.monotonic() + START_TIMEOUT
    url = None
    seen = []
    while time.monotonic() < deadline and url is None:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"on (127\.0\.0\.1:\d+)", line)
        if match:
            url = f"http://{match.group(1)}"
    if url is None:
        proc.kill()
        pytest.fail("qwen serve did not start: " + "".join(seen))
    # Keep reading its log, or a full pipe would stall the server.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail("qwen serve never became healthy")


def stop_server(proc: subprocess.Popen) -> int | None:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def spawn_repl(*args: str, timeout: float = 120):
    """`qwen run ARGS` on a pseudo-terminal, at its first prompt. TERM=dumb and no cursor-position
    requests keep prompt_toolkit's output plain enough to match."""
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "qwencli", "run", *map(str, args)], env=env, cwd=str(ROOT),
                          encoding="utf-8", timeout=timeout, dimensions=(50, 250))
    child.expect(">>> ")
    return child


def at_prompt() -> None:
    # ">>> " is printed a moment before the terminal goes raw; a control key sent in between
    # would be eaten by the tty's line discipline, as it would for a human typing that fast.
    time.sleep(0.5)


def expect_answer_begun(child, asked: str, words: int = 3, timeout: float = 60) -> None:
    """Wait until `words` words of the model's answer to `asked` have been printed.

    Words of `asked` do not count: prompt_toolkit may redraw the typed line, and matching its
    echo would send the next key while the terminal is still raw (the key is then lost). Words
    starting with a digit do not count either: they come from escape sequences."""
    typed = "|".join(sorted(set(re.findall(r"\w+", asked)), key=len, reverse=True))
    child.expect(rf"\b(?!(?:{typed})\b)(?![0-9])\w+(?:\W+\w+){{{words - 1}}}", timeout=timeout)


def leave_repl(child) -> int:
    """Ctrl-D at the prompt; the exit status."""
    import pexpect

    at_prompt()
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def as_json(result: subprocess.CompletedProcess) -> dict:
    """The `--json` object of a `run_qwen` that must have succeeded."""
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def journal_lines(path: Path) -> list[dict]:
    """A `qwen eval` journal: the header, then one object a finished question."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def interrupted_eval(args: list[str], journal: Path, *, wait: float = 300) -> tuple[int, bytes, bytes]:
    """`qwen *args` (a journaled `qwen eval` run) sent SIGINT once `journal` holds its header and
    one question: (exit status, stdout, stderr)."""
    proc = subprocess.Popen([*QWEN, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err
