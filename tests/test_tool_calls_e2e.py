"""Forced tool calls in both dialects through a real `qwen serve`, called with the official
`openai` SDK: tiny random-weight Qwen models with the real Qwen3-Coder and Qwen3.5 templates
(XML) and Qwen2.5's (Hermes), on llama.cpp, and the Qwen3.5 one on torch. The weights know
nothing of tools, so what the client gets is the grammar's and the parser's doing: a call of
the named (or some offered) function whose arguments arrive as the schema's types."""

from __future__ import annotations

import json

import pytest

from tests.models import build_tiny
from tests.processes import start_server, stop_server
from tests.tool_models import build_tiny_with_template

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow

MULTILINE = "line one\n  line two\n"
#: Types a random model cannot run on for ever under a grammar (a free string could).
SETTINGS = {"type": "function", "function": {
    "name": "apply_settings", "description": "Apply settings",
    "parameters": {"type": "object", "properties": {
        "count": {"type": "integer"},
        "enabled": {"type": "boolean"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "banner": {"enum": [MULTILINE]},  # a string, newlines and all, the model must write out
        "level": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    }, "required": ["count", "enabled", "unit", "banner", "level"]}}}
OTHER = {"type": "function", "function": {"name": "ping", "parameters": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
ASK = [{"role": "user", "content": "Apply the settings."}]
NAMED = {"type": "function", "function": {"name": "apply_settings"}}


def _check_typed(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) == {"count", "enabled", "unit", "banner", "level"}, args
    assert type(args["count"]) is int and type(args["enabled"]) is bool
    assert args["unit"] in ("celsius", "fahrenheit") and args["banner"] == MULTILINE
    assert args["level"] is None or type(args["level"]) is int


@pytest.fixture(scope="module")
def llama_server(qwen_tokenizer):
    paths = {
        "xml-coder": build_tiny_with_template("gguf", "qwen2", qwen_tokenizer, "Qwen3-Coder.jinja"),
        "xml-qwen35": build_tiny_with_template("gguf", "qwen2", qwen_tokenizer, "Qwen3.5-4B.jinja"),
        "hermes": build_tiny("gguf", "qwen2", qwen_tokenizer),
    }
    server, base = start_server(*map(str, paths.values()))
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        served = [m.id for m in client.models.list().data]
        names = {key: next(n for n in served if n == path.stem) for key, path in paths.items()}
        yield client, names
    finally:
        stop_server(server)


@pytest.mark.parametrize("choice", [NAMED, "required"])
@pytest.mark.parametrize("model", ["xml-coder", "xml-qwen35", "hermes"])
def test_a_forced_call_arrives_with_arguments_typed_per_schema(llama_server, model, choice):
    client, names = llama_server
    reply = client.chat.completions.create(model=names[model], messages=ASK, tools=[SETTINGS, OTHER],
                                           tool_choice=choice, temperature=0, max_tokens=300)
    first = reply.choices[0]
    assert first.finish_reason == "tool_calls", first
    assert not first.message.content
    calls = first.message.tool_calls
    assert calls and all(c.id.startswith("call_") for c in calls)
    if choice == NAMED:
        assert [c.function.name for c in calls] == ["apply_settings"]
    for call in calls:
        assert call.function.name in ("apply_settings", "ping")
        if call.function.name == "apply_settings":
            _check_typed(call.function.arguments)
        else:
            assert type(json.loads(call.function.arguments)["n"]) is int


@pytest.mark.parametrize("model", ["xml-coder", "xml-qwen35"])
def test_a_forced_xml_call_streams_as_tool_call_deltas(llama_server, model):
    client, names = llama_server
    chunks = list(client.chat.completions.create(model=names[model], messages=ASK, tools=[SETTINGS], stream=True,
                                                 tool_choice=NAMED, temperature=0, max_tokens=300))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "apply_settings")]
    _check_typed(deltas[0].function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_an_xml_model_takes_its_calls_and_their_results_back(llama_server):
    """The history goes back through the template: arguments as an object (`arguments|items`),
    the result as a tool response; the tiny model then answers as it always does."""
    client, names = llama_server
    call = client.chat.completions.create(model=names["xml-coder"], messages=ASK, tools=[SETTINGS],
                                          tool_choice=NAMED, temperature=0, max_tokens=300).choices[0].message
    history = [*ASK, call.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "applied"}]
    reply = client.chat.completions.create(model=names["xml-coder"], messages=history, tools=[SETTINGS],
                                           temperature=0, max_tokens=8)
    assert reply.choices[0].message.content == "Hello world" and reply.choices[0].finish_reason == "stop"
    plain = client.chat.completions.create(model=names["xml-coder"], messages=ASK, tools=[SETTINGS],
                                           temperature=0, max_tokens=1)
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 40  # the call and its result were rendered
    with pytest.raises(openai.BadRequestError) as err:
        history[1]["tool_calls"][0]["function"]["arguments"] = "count=3"
        client.chat.completions.create(model=names["xml-coder"], messages=history, tools=[SETTINGS], max_tokens=4)
    assert err.value.body["param"] == "messages[1].tool_calls[0].function.arguments"


def test_a_forced_xml_call_with_parallel_slots(qwen_tokenizer):
    """`--parallel` decodes in a batch with llama.cpp's own grammar sampler (C++, not the
    Python LlamaGrammar): it takes the XML grammar as well."""
    path = build_tiny_with_template("gguf", "qwen2", qwen_tokenizer, "Qwen3.5-4B.jinja")
    server, base = start_server(str(path), "--parallel", "2")
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model=path.stem, messages=ASK, tools=[SETTINGS], tool_choice=NAMED,
                                               temperature=0, max_tokens=300)
        assert reply.choices[0].finish_reason == "tool_calls"
        _check_typed(reply.choices[0].message.tool_calls[0].function.arguments)
    finally:
        stop_server(server)


def test_a_forced_xml_call_on_the_torch_backend(qwen_tokenizer, isolated_home):
    pytest.importorskip("torch")
    pytest.importorskip("xgrammar")
    folder = build_tiny_with_template("hf", "qwen2", qwen_tokenizer, "Qwen3.5-4B.jinja")
    server, base = start_server(str(folder), "--backend", "torch", "--device", "cpu")
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        for choice in (NAMED, "required"):
            reply = client.chat.completions.create(model=folder.name, messages=ASK, tools=[SETTINGS, OTHER],
                                                   tool_choice=choice, temperature=0, max_tokens=300)
            first = reply.choices[0]
            assert first.finish_reason == "tool_calls", first
            named = [c for c in first.message.tool_calls if c.function.name == "apply_settings"]
            if choice == NAMED:
                assert len(named) == len(first.message.tool_calls) == 1
            for call in named:
                _check_typed(call.function.arguments)
    finally:
        stop_server(server)
