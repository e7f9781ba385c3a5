"""`qwen run` end to end: real llama.cpp, real subprocesses, real models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.greedy import PARIS, SYSTEM
from tests.models import ROOT
from tests.processes import QWEN, run_qwen

pytestmark = pytest.mark.slow

GREEDY = ("--system", SYSTEM, "--temperature", "0")


def test_smollm2_answers_paris_and_stdout_holds_only_the_answer(smollm2, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "wb") as stdout:
        result = subprocess.run([*QWEN, "run", str(smollm2), *GREEDY, "--verbose", PARIS.question],
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == f"{PARIS.answer}\n".encode()
    stderr = result.stderr.decode()
    assert "first token" in stderr and "t/s" in stderr  # --verbose statistics, on stderr only


def test_piped_stdin_is_the_prompt(smollm2):
    result = run_qwen("run", smollm2, *GREEDY, input=f"{PARIS.question}\n")
    assert result.returncode == 0 and b"Paris" in result.stdout


def test_stdin_and_argument_are_both_used(tiny_qwen2_gguf):
    both = run_qwen("run", tiny_qwen2_gguf, "--json", "ARGUMENT words", input="STDIN text\n")
    joined = run_qwen("run", tiny_qwen2_gguf, "--json", "STDIN text\n\nARGUMENT words")
    alone = run_qwen("run", tiny_qwen2_gguf, "--json", "ARGUMENT words")
    tokens = [json.loads(r.stdout)["usage"]["prompt_tokens"] for r in (both, joined, alone)]
    assert tokens[0] == tokens[1] > tokens[2]  # the order itself: tests/test_cli_input.py


def test_tiny_qwen2_stops_at_im_end(tiny_qwen2_gguf):
    result = run_qwen("run", tiny_qwen2_gguf, "--temperature", "0", "--json", "hi")
    record = json.loads(result.stdout)
    assert record["text"] == "Hello world"
    assert record["finish_reason"] == "stop"
    assert record["usage"]["completion_tokens"] == 2
    assert set(record["timings"]) >= {"load_seconds", "first_token_seconds", "generation_tokens_per_second"}


def test_head_ends_quietly_and_generation_stops(smollm2):
    started = time.monotonic()
    result = subprocess.run(
        f"{' '.join(QWEN)} run {smollm2} --temperature 0 -n 4000 'Count from 1 to 1000, one number per line.'"
        " | head -n 1; echo \"status=${PIPESTATUS[0]}\" >&2",
        shell=True, executable="/bin/bash", capture_output=True, timeout=120, cwd=ROOT)
    elapsed = time.monotonic() - started
    assert result.stdout.count(b"\n") == 1
    assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr
    assert b"status=0" in result.stderr
    assert elapsed < 20  # 4000 tokens would take about 30 s at this machine's speed


def test_a_busy_cpu_does_not_stall_the_answer(smollm2):
    """Other programs keeping every core busy: llama.cpp at one thread per core would spin at its
    barriers for seconds per token (raw llama-cpp-python here: 48 tokens in over a minute);
    qwen gives up threads while the CPU is crowded, and the answer stays the same."""
    pexpect = pytest.importorskip("pexpect")
    from qwencli.hardware import physical_cores

    if physical_cores() < 2:
        pytest.skip("one core: one thread already")
    args = ["run", str(smollm2), *GREEDY, "-n", "64", "--verbose", "Write a story about a dragon."]
    quiet = run_qwen(*args)
    assert quiet.returncode == 0, quiet.stderr.decode()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, (os.cpu_count() or 2) - 1))]
    try:
        # On a terminal, as people read answers (its reader is one more program wanting a core).
        # About 5 s here; a stalled engine takes 40 s and more.
        child = pexpect.spawn(QWEN[0], [*QWEN[1:], *args], cwd=str(ROOT), encoding="utf-8", timeout=30)
        child.expect(pexpect.EOF)
        child.close()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    shown = child.before.replace("\r\n", "\n")
    assert child.exitstatus == 0, shown
    assert quiet.stdout.decode() in shown  # the same answer, whole
    assert "CPU threads (the CPU was busy)" in shown  # --verbose says why it ran on fewer


def test_ctrl_c_exits_130_without_traceback(smollm2):
    proc = subprocess.Popen([*QWEN, "run", str(smollm2), "-n", "2000", "Write a long story about a dragon."],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 60
    first = proc.stdout.read(1)  # wait until it writes
    assert first and time.monotonic() < deadline
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"Traceback" not in err


def test_invalid_utf8_on_stdin_is_replaced_with_one_warning(tiny_qwen2_gguf):
    result = run_qwen("run", tiny_qwen2_gguf, input=b"caf\xe9 \xff\xfe latte\n")
    assert result.returncode == 0
    assert result.stdout == b"Hello world\n"
    assert result.stderr.decode().count("not valid UTF-8") == 1


def test_format_json_output_parses(smollm2):
    result = run_qwen("run", smollm2, "--format", "json", "--temperature", "0", "-n", "200",
                      "Give a JSON object with keys name and age for a person called Ann who is 30.")
    assert result.returncode == 0, result.stderr.decode()
    assert isinstance(json.loads(result.stdout), dict)


@pytest.mark.parametrize("flags,stdout,stderr_has_reasoning", [
    ((), b"Answer\n", False),
    (("--think",), b"Answer\n", True),
    (("--no-think",), b"Answer\n", False),
])
def test_thinking_stays_out_of_pipes_unless_asked(tiny_qwen3_gguf, flags, stdout, stderr_has_reasoning):
    result = run_qwen("run", tiny_qwen3_gguf, *flags, "hi")
    assert result.returncode == 0
    assert result.stdout == stdout
    assert (b"Reason" in result.stderr) is stderr_has_reasoning


def test_no_think_switches_the_template(tiny_qwen3_gguf):
    on = json.loads(run_qwen("run", tiny_qwen3_gguf, "--json", "hi").stdout)
    off = json.loads(run_qwen("run", tiny_qwen3_gguf, "--json", "--no-think", "hi").stdout)
    assert (on["reasoning"], on["text"]) == ("Reason", "Answer")
    assert (off["reasoning"], off["text"]) == (None, "Answer")
    assert off["usage"]["prompt_tokens"] == on["usage"]["prompt_tokens"] + 4  # "<think>\n\n</think>\n\n"


@pytest.mark.parametrize("args,status,message", [
    (("run", "{model}", "--temperature", "9", "hi"), 2, "temperature must be between"),
    (("run", "{model}", "--format", "xml", "hi"), 2, "--format takes 'json'"),
    (("run", "{model}"), 2, "no prompt"),
    (("run", "/no/such/model.gguf", "hi"), 1, "no such file"),
])
def test_usage_and_missing_model_errors(tiny_qwen2_gguf, args, status, message):
    result = run_qwen(*[a.format(model=tiny_qwen2_gguf) for a in args])
    assert result.returncode == status
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


def test_debug_shows_the_traceback():
    result = run_qwen("run", "/no/such/model.gguf", "hi", env={"QWEN_DEBUG": "1"})
    assert result.returncode == 1 and b"Traceback" in result.stderr
