"""The REPL through a real pseudo-terminal with the real model: memory across turns, /clear,
Ctrl-C in the middle of an answer, then a question that works, Ctrl-D."""

from __future__ import annotations

import json
import re

import pytest

from tests.greedy import PARIS, PARIS_MULTILINE, SECRET_WORD, SYSTEM
from tests.processes import at_prompt, expect_answer_begun, spawn_repl

pytestmark = pytest.mark.slow

pexpect = pytest.importorskip("pexpect")
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
PROMPT = ">>> "


@pytest.fixture
def repl(smollm2, isolated_home):
    # Short replies (-n): a busy CI machine is slow; the Ctrl-C test raises the limit itself.
    child = spawn_repl(smollm2, "--system", SYSTEM, "--temperature", "0", "-n", str(SECRET_WORD.max_tokens))
    yield child
    if child.isalive():
        child.terminate(force=True)


def ask(child, line: str) -> str:
    child.sendline(line)
    child.expect(PROMPT)
    return ANSI.sub("", child.before)


def test_conversation_remembers_clears_and_survives_ctrl_c(repl, isolated_home, tmp_path):
    told, asked = SECRET_WORD.turns
    ask(repl, told)
    assert SECRET_WORD.contains in ask(repl, asked)
    ask(repl, f"/save {tmp_path / 'chat.json'}")
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == [told, asked]

    shown = ask(repl, "/show")
    assert re.search(r"context\s+\d+ / 8192 tokens", shown) and "turns        2" in shown

    ask(repl, "/clear")
    assert "turns        0" in ask(repl, "/show")

    ask(repl, "/set max_tokens 4000")  # a reply still being written when Ctrl-C comes
    story = "Write a very long story about a dragon."
    repl.sendline(story)
    expect_answer_begun(repl, story)  # the answer is being written
    repl.sendintr()
    repl.expect(PROMPT)
    assert "(stopped)" in ANSI.sub("", repl.before)
    assert "turns        1" in ask(repl, "/show")  # the interrupted story is kept as far as it went

    # A fresh conversation, so the question's prompt does not depend on where Ctrl-C landed.
    ask(repl, "/clear")
    assert "Paris" in ask(repl, PARIS.question)
    assert "turns        1" in ask(repl, "/show")

    at_prompt()
    repl.sendintr()  # at the prompt: a hint, not an exit
    repl.expect("Ctrl-D")
    repl.expect(PROMPT)
    at_prompt()
    repl.sendeof()
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0
    history = (isolated_home / "qwen" / "history").read_text()
    assert PARIS.question in history


def test_multiline_block_and_bye(repl):
    first, second = PARIS_MULTILINE.question.split("\n")
    repl.sendline('"""')
    repl.sendline(first)
    repl.sendline(f'{second}"""')
    repl.expect(PROMPT)
    assert "Paris" in ANSI.sub("", repl.before)
    repl.sendline("/bye")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0
