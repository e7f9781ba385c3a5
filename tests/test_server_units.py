"""Unit tests of the server's pieces that need no socket: tool-call parsing, the FIFO, request
validation, the Host check, durations."""

from __future__ import annotations

import asyncio
import json

import pytest

from qwencli.chat import ToolCall
from qwencli.server.scheduler import QueueFull, Scheduler
from qwencli.server.security import host_name
from qwencli.server.tools import Text, call_stream
from qwencli.server.tools.hermes import forced_grammar as forced_call_grammar
from qwencli.server.tools.hermes import parse_call

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def run_stream(pieces, **kwargs):
    stream = call_stream("hermes", (), **kwargs)
    events = [e for piece in pieces for e in stream.feed(piece)] + list(stream.finish())
    text = "".join(e.text for e in events if isinstance(e, Text))
    calls = [e for e in events if isinstance(e, ToolCall)]
    return text, calls


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_tool_calls_split_anywhere_are_found(size):
    reply = "Checking. " + CALL + "\n" + CALL.replace("Paris", "Rome")
    text, calls = run_stream([reply[i:i + size] for i in range(0, len(reply), size)])
    assert text == "Checking."  # the space before a call is layout, however the pieces split
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert all(c.name == "get_weather" and c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2


def test_tool_calls_cut_anywhere_are_found():
    reply = "Checking. " + CALL + "\n" + CALL.replace("Paris", "Rome") + " Done."
    for cut in range(len(reply) + 1):
        text, calls = run_stream([reply[:cut], reply[cut:]])
        assert text == "Checking. Done.", cut
        assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}], cut


def test_text_that_only_looks_like_a_tag_is_kept():
    text, calls = run_stream(["a <tool", "_cal", " b <", "tool_call> {not json} </tool_call> c"])
    assert calls == []
    assert text == "a <tool_cal b <tool_call> {not json} </tool_call> c"


def test_a_call_cut_off_by_the_token_limit_stays_text():
    text, calls = run_stream(['<tool_call>\n{"name": "f", "argu'])
    assert calls == [] and text == '<tool_call>\n{"name": "f", "argu'


def test_first_only_keeps_one_call():
    _, calls = run_stream([CALL, CALL], first_only=True)
    assert len(calls) == 1


@pytest.mark.parametrize("body, arguments", [
    ('{"name": "f", "arguments": {"a": 1}}', {"a": 1}),
    ('{"name": "f", "arguments": "{\\"a\\": 1}"}', {"a": 1}),  # already encoded
    ('{"name": "f", "parameters": {"a": 1}}', {"a": 1}),
    ('{"name": "f"}', {}),
    ('{"name": "f", "arguments": {"code": "a\n  b"}}', {"code": "a\n  b"}),  # a raw newline in a string
])
def test_parse_call_accepts_the_shapes_models_write(body, arguments):
    call = parse_call(body)
    assert call is not None and json.loads(call.arguments) == arguments


@pytest.mark.parametrize("body", ['{"arguments": {}}', '{"name": "", "arguments": {}}', '[1]', 'nope',
                                  '{"name": "f", "arguments": [1]}', '{"name": "f", "arguments": "x"}'])
def test_parse_call_rejects_what_is_not_a_call(body):
    assert parse_call(body) is None


def test_forced_call_grammar_is_accepted_by_llama_cpp():
    from llama_cpp.llama_grammar import LlamaGrammar

    tools = [{"type": "function", "function": {"name": "a", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}},
             {"type": "function", "function": {"name": "b"}}]
    for several in (False, True):
        grammar = forced_call_grammar(tools, several=several)
        assert grammar.startswith("root ::=")
        LlamaGrammar.from_string(grammar, verbose=False)


# -- the FIFO ---------------------------------------------------------------------------------


def test_scheduler_is_fifo_bounded_and_leaving_frees_the_place():
    async def main():
        scheduler = Scheduler(slots=1, max_waiting=2)
        first = scheduler.enqueue()
        assert first.granted
        second, third = scheduler.enqueue(), scheduler.enqueue()
        with pytest.raises(QueueFull) as full:
            scheduler.enqueue()
        assert 1 <= full.value.retry_after <= 60
        scheduler.release(second)  # gave up while waiting
        assert scheduler.waiting == 1
        scheduler.release(first)
        await asyncio.wait_for(scheduler.wait(third), 1)
        assert third.granted and scheduler.running == 1
        scheduler.release(third)
        scheduler.release(third)  # idempotent
        assert scheduler.idle

    asyncio.run(main())


def test_an_exclusive_ticket_waits_for_every_slot_and_blocks_those_behind():
    async def main():
        scheduler = Scheduler(slots=2, max_waiting=4)
        a = scheduler.enqueue()
        exclusive = scheduler.enqueue(exclusive=True)
        behind = scheduler.enqueue()
        assert not exclusive.granted and not behind.granted  # one slot is free, but FIFO
        scheduler.release(a)
        assert exclusive.granted and not behind.granted
        scheduler.release(exclusive, exclusive.slots - 1)  # keeps one slot
        assert behind.granted

    asyncio.run(main())


# -- validation -------------------------------------------------------------------------------


def test_validation_errors_name_the_field():
    from qwencli.server.app import validation_error

    error = validation_error([{"type": "extra_forbidden", "loc": ("body", "messages", 0, "colour"), "msg": "x"}])
    assert error.status == 400 and error.param == "messages[0].colour" and "messages[0].colour" in error.message
    error = validation_error([{"type": "json_invalid", "loc": ("body", 3), "msg": "x"}])
    assert error.status == 400 and "JSON" in error.message
    error = validation_error([{"type": "missing", "loc": ("body", "model"), "msg": "Field required"}])
    assert error.param == "model"


def test_jobs_reject_what_the_server_cannot_do():
    from qwencli.server.jobs import chat_job
    from qwencli.server.openai_errors import ApiError
    from qwencli.server.schemas import ChatCompletionRequest

    def job(**fields):
        return chat_job(ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **fields))

    assert job(max_completion_tokens=5).options.max_tokens == 5
    assert job(chat_template_kwargs={"enable_thinking": False}).options.think is False
    for bad in ({"max_tokens": 5, "max_completion_tokens": 6}, {"tool_choice": "required"},
                {"response_format": {"type": "json_schema"}}, {"stream_options": {"include_usage": True}},
                {"enable_thinking": True, "chat_template_kwargs": {"enable_thinking": False}}):
        with pytest.raises(ApiError) as err:
            job(**bad)
        assert err.value.status == 400
    with pytest.raises(ApiError):
        chat_job(ChatCompletionRequest(model="m", messages=[{"role": "tool", "content": "x"}]))


def test_message_content_is_data_not_a_template():
    from qwencli.server.jobs import to_messages
    from qwencli.server.schemas import ChatMessage

    message = to_messages([ChatMessage(role="user", content=[{"type": "text", "text": "{{ 7*7 }}"}])])[0]
    assert message.content == "{{ 7*7 }}"


@pytest.mark.parametrize("header, name", [("localhost:7936", "localhost"), ("[::1]:7936", "[::1]"),
                                          ("127.0.0.1", "127.0.0.1"), ("EVIL.com:80", "evil.com"), ("::1", "::1")])
def test_host_name(header, name):
    assert host_name(header) == name


def test_parse_duration():
    from qwencli.cli.serve import parse_duration
    from qwencli.errors import UsageError

    assert parse_duration("5m") == 300 and parse_duration("30s") == 30 and parse_duration("-1") is None
    assert parse_duration("0") == 0 and parse_duration("1h") == 3600
    with pytest.raises(UsageError):
        parse_duration("soon")
