"""Thinking controls per template: what --think/--no-think, --reasoning-effort, `/set think` and the
server's request fields ask, what each kind of template can do, and the note when it cannot."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from qwencli.chat import collect
from qwencli.repl import commands
from qwencli.session import Conversation
from qwencli.templates import ChatTemplate
from qwencli.thinking import asked_to_think, effort_thinks, unchangeable
from tests.fakes import FakeBackend
from tests.fixtures import tiny_hybrid
from tests.fixtures.tiny_qwen import QWEN25_TEMPLATE

#: The shape of Qwen3-*-Thinking-2507's template: no switch, the generation prompt opens <think>.
THINKING_2507 = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)


def test_what_each_template_can_do(qwen_tokenizer):
    import json

    qwen3 = json.loads((qwen_tokenizer / "tokenizer_config.json").read_text())["chat_template"]
    assert ChatTemplate(qwen3).thinking_control == "switch"
    assert ChatTemplate(tiny_hybrid.qwen35_template()).thinking_control == "switch"
    assert ChatTemplate(tiny_hybrid.server_config_template("qwen3.6-27b")).thinking_control == "switch"
    assert ChatTemplate(QWEN25_TEMPLATE).thinking_control == "never"  # also 2507 Instruct, Coder
    assert ChatTemplate(THINKING_2507).thinking_control == "always"


def test_reasoning_effort_levels():
    assert [effort_thinks(e) for e in ("none", "minimal", "low", "medium", "high")] == [False] * 3 + [True] * 2
    assert asked_to_think(None, "low") is False and asked_to_think(None, "high") is True
    assert asked_to_think(True, "low") is True  # an explicit switch wins
    assert asked_to_think(None, None) is None


@pytest.mark.parametrize(("control", "asked", "notes"), [
    ("switch", True, False), ("switch", False, False),
    ("never", True, True), ("never", False, False), ("never", None, False),
    ("always", False, True), ("always", True, False), ("always", None, False),
])
def test_a_note_only_when_the_model_cannot_do_as_asked(control, asked, notes):
    assert (unchangeable(control, asked) is not None) is notes


def _state(thinking="switch"):
    backend = FakeBackend(replies=["a"])
    backend.info = dataclasses.replace(backend.info, thinking=thinking)
    said: list[str] = []
    return commands.ReplState(Conversation(backend), say=said.append), said


def _run(state, line):
    command, arg = commands.find(line)
    out = command.handler(state, arg)
    return collect(out) if out is not None else None


def test_set_think_takes_levels_and_switches():
    state, said = _state()
    _run(state, "/set think low")
    assert (state.conversation.options.think, state.conversation.options.reasoning_effort) == (None, "low")
    _run(state, "/set think on")
    assert (state.conversation.options.think, state.conversation.options.reasoning_effort) == (True, None)
    _run(state, "/set think high")
    assert state.conversation.options.reasoning_effort == "high"
    _run(state, "/set think default")
    assert (state.conversation.options.think, state.conversation.options.reasoning_effort) == (None, None)
    assert not any("will not change" in s for s in said)


def test_set_think_on_a_model_that_cannot_change_says_so():
    state, said = _state(thinking="always")
    _run(state, "/set think off")
    assert "will not change" in said[-1] and "always thinks" in said[-1]
    state, said = _state(thinking="never")
    _run(state, "/set think high")
    assert "does not think" in said[-1]


def test_the_repl_sends_the_switch_with_every_turn():
    state, _ = _state()
    _run(state, "/set think minimal")
    collect(state.conversation.ask("hi"))
    backend = state.conversation.backend
    assert backend.calls[-1][1].reasoning_effort == "minimal"


def test_server_requests_carry_the_controls():
    from qwencli.server.jobs import chat_job
    from qwencli.server.openai_errors import ApiError
    from qwencli.server.schemas import ChatCompletionRequest

    def job(**fields):
        return chat_job(ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **fields))

    assert job(reasoning_effort="low").options.reasoning_effort == "low"
    assert job(chat_template_kwargs={"reasoning_effort": "high"}).options.reasoning_effort == "high"
    assert job(chat_template_kwargs={"preserve_thinking": True}).options.preserve_thinking is True
    with pytest.raises(ApiError):
        job(reasoning_effort="low", chat_template_kwargs={"reasoning_effort": "high"})
    with pytest.raises(pydantic.ValidationError):  # not a level
        job(reasoning_effort="extreme")
    developer = chat_job(ChatCompletionRequest(model="m", messages=[
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]))
    assert developer.messages[0].role == "developer"  # the template decides how it is rendered


@pytest.mark.slow
def test_run_says_when_a_flag_cannot_change_the_model(tiny_qwen2_gguf, qwen_tokenizer, tmp_path):
    from tests.fixtures.tiny_qwen import write_gguf
    from tests.processes import run_qwen

    never = run_qwen("run", tiny_qwen2_gguf, "--think", "--temperature", "0", "hi")
    assert never.returncode == 0 and b"--think has no effect" in never.stderr
    always = write_gguf(tmp_path / "thinking-2507.gguf", "qwen3", qwen_tokenizer, template=THINKING_2507)
    result = run_qwen("run", always, "--no-think", "--temperature", "0", "hi")
    assert result.returncode == 0 and b"--no-think has no effect" in result.stderr
    assert b"always thinks" in result.stderr
    quiet = run_qwen("run", tiny_qwen2_gguf, "--no-think", "--temperature", "0", "hi")
    assert b"no effect" not in quiet.stderr
    bad = run_qwen("run", tiny_qwen2_gguf, "--reasoning-effort", "extreme", "hi")
    assert bad.returncode == 2 and b"--reasoning-effort" in bad.stderr


@pytest.mark.slow
def test_reasoning_effort_switches_a_qwen35_model(tiny_hybrid_gguf):
    """On Qwen3.5's template (no reasoning_effort of its own) the level becomes enable_thinking:
    "low" answers without a reasoning part, "high" with one (the template opens <think>)."""
    import json

    from tests.processes import run_qwen

    runs = {}
    for level in ("low", "high"):
        result = run_qwen("run", tiny_hybrid_gguf, "--reasoning-effort", level, "--temperature", "0",
                          "--max-tokens", "4", "--json", "hi")
        assert result.returncode == 0, result.stderr
        runs[level] = json.loads(result.stdout)
    assert runs["low"]["usage"]["prompt_tokens"] == runs["high"]["usage"]["prompt_tokens"] + 2  # "\n\n</think>\n\n"
    assert not runs["low"].get("reasoning") and runs["high"].get("reasoning")


def test_switching_thinking_switches_the_sampling_set_shown():
    state, said = _state()
    state.conversation.backend.info = dataclasses.replace(state.conversation.backend.info, family="qwen3.5")
    _run(state, "/set think on")
    _run(state, "/show")
    assert "temperature 1.0, top_p 0.95" in said[-1] and "presence_penalty 1.5" in said[-1]
    _run(state, "/set think low")
    _run(state, "/show")
    assert "temperature 0.7, top_p 0.8" in said[-1]
    _run(state, "/set temperature 0.3")
    _run(state, "/show")
    assert "temperature 0.3, top_p 0.8" in said[-1]  # a value set stays set
