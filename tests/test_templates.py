"""The prompt we render is byte-identical to transformers' apply_chat_template, and its tokens
are the ones Hugging Face's tokenizer makes; a hostile template runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwencli.chat import Message, ToolCall
from qwencli.errors import TemplateError
from qwencli.templates import ChatTemplate
from tests.fixtures.tiny_qwen import QWEN25_TEMPLATE

CONVERSATIONS = {
    "one turn": [Message("user", "What is the capital of France?")],
    "with system": [Message("system", "You are terse."), Message("user", "Hi!")],
    "multi-turn": [
        Message("system", "You are a helpful assistant."),
        Message("user", "My name is Bob."),
        Message("assistant", "Nice to meet you, Bob."),
        Message("user", "What is my name?"),
    ],
    "reasoning in history": [
        Message("user", "2+2?"),
        Message("assistant", "4", reasoning="Two plus two is four."),
        Message("user", "And 3+3?"),
    ],
    "template-looking content": [Message("user", "{{ 7*7 }} {% if true %}x{% endif %} ünïcödé")],
    "tool round trip": [
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", '{"temp": 21}', tool_call_id="call_1"),
    ],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_tokenizer):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(qwen_tokenizer))


def _hf_messages(messages):
    """The messages as a transformers user writes them: tool-call arguments as objects."""
    out = []
    for m in messages:
        d = {"role": m.role, "content": m.content}
        if m.reasoning is not None:
            d["reasoning_content"] = m.reasoning
        if m.tool_calls:
            d["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                               for c in m.tool_calls]
        out.append(d)
    return out


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("think", [None, True, False])
@pytest.mark.parametrize("template_name", ["qwen3", "qwen2.5"])
def test_render_matches_transformers(hf_tokenizer, name, think, template_name):
    source = hf_tokenizer.chat_template if template_name == "qwen3" else QWEN25_TEMPLATE
    messages = CONVERSATIONS[name]
    tools = TOOLS if name == "tool round trip" else None
    kwargs = {} if think is None else {"enable_thinking": think}
    expected = hf_tokenizer.apply_chat_template(
        _hf_messages(messages),
        tools=tools, add_generation_prompt=True, tokenize=False, chat_template=source, **kwargs)
    ours = ChatTemplate(source, eos_token="<|im_end|>").render(messages, tools=tools, think=think)
    assert ours == expected


def test_message_content_is_data():
    prompt = ChatTemplate(QWEN25_TEMPLATE).render([Message("user", "{{ 7*7 }}")])
    assert "{{ 7*7 }}" in prompt and "49" not in prompt


@pytest.mark.parametrize("source", [
    "{{ cycler.__init__.__globals__.os.popen('touch /tmp/qwencli-pwned').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% set ns = namespace() %}{% set ns._x = 1 %}",
])
def test_hostile_template_is_stopped(source, tmp_path):
    marker = Path("/tmp/qwencli-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(TemplateError):
        ChatTemplate(source).render([Message("user", "hi")])
    assert not marker.exists()


def test_broken_template_is_a_clear_error():
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate("{% for x in %}")


def test_llama_cpp_tokens_match_hf(hf_tokenizer, tiny_qwen3_gguf):
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.chat import GenerationOptions

    backend = LlamaCppBackend(tiny_qwen3_gguf)
    try:
        messages = CONVERSATIONS["multi-turn"]
        prompt = backend.render(messages, GenerationOptions())
        assert prompt == hf_tokenizer.apply_chat_template(_hf_messages(messages),
                                                          add_generation_prompt=True, tokenize=False)
        ours = backend._engine.call(backend._tokenize, prompt)
        assert ours == hf_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    finally:
        backend.close()


# -- the Qwen3-Coder XML templates (Qwen3-Coder, Qwen3.5, Qwen3.6) -----------------------------

XML_TOOLS = TOOLS + [{"type": "function", "function": {"name": "write_file", "description": "Write a file",
                      "parameters": {"type": "object", "properties": {
                          "path": {"type": "string"}, "content": {"type": "string", "description": "the text"},
                          "mode": {"type": "integer"}, "overwrite": {"type": "boolean"},
                          "meta": {"type": "object"}}, "required": ["path", "content"]}}}]
WRITE_ARGS = {"path": "a.py", "content": "def f():\n    return 1\n", "mode": 644, "overwrite": True,
              "meta": {"tags": ["x", "y"], "n": 1.5}, "missing": None}
XML_CONVERSATIONS = {
    "parallel calls, typed arguments, two results": [
        Message("system", "You write files."),
        Message("user", "Write a.py and tell me the weather in Paris."),
        Message("assistant", "On it.", tool_calls=(
            ToolCall("call_1", "write_file", json.dumps(WRITE_ARGS)),
            ToolCall("call_2", "get_weather", '{"city": "Paris"}'))),
        Message("tool", "written", tool_call_id="call_1"),
        Message("tool", '{"temp": 21,\n "sky": "clear"}', tool_call_id="call_2"),
        Message("assistant", "Done: 21 degrees."),
        Message("user", "Thanks!"),
    ],
    "a call without text, then its result": [
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", '{"temp": 21}', tool_call_id="call_1"),
    ],
    "a call with reasoning": [
        Message("user", "Weather in Paris?"),
        Message("assistant", "", reasoning="The user wants weather.",
                tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", "sunny", tool_call_id="call_1"),
    ],
}


def _hf_xml_messages(messages):
    out = _hf_messages(messages)
    for d, m in zip(out, messages):
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
    return out


@pytest.mark.parametrize("name", XML_CONVERSATIONS)
@pytest.mark.parametrize("think", [None, False])
@pytest.mark.parametrize("template_name", ["Qwen3-Coder.jinja", "Qwen3.5-4B.jinja", "qwen3.6-27b.json"])
def test_xml_templates_render_tool_calls_and_results_as_transformers(hf_tokenizer, name, think, template_name):
    """Arguments reach the template as an object (it iterates `arguments|items`), typed values
    as the objects they are, so the history reads exactly as transformers writes it."""
    from tests.tool_models import template

    source = template(template_name)
    messages = XML_CONVERSATIONS[name]
    kwargs = {} if think is None else {"enable_thinking": think}
    expected = hf_tokenizer.apply_chat_template(
        _hf_xml_messages(messages), tools=XML_TOOLS, add_generation_prompt=True, tokenize=False,
        chat_template=source, **kwargs)
    ours = ChatTemplate(source, eos_token="<|im_end|>").render(messages, tools=XML_TOOLS, think=think)
    assert ours == expected
    if name.startswith("parallel"):
        assert "<parameter=mode>\n644\n</parameter>" in ours
        assert "<parameter=content>\ndef f():\n    return 1\n\n</parameter>" in ours


def test_a_template_compiled_on_the_side_renders_the_same_and_a_broken_one_still_says_so():
    """`compile_soon` (started while llama.cpp loads the weights) changes nothing but when."""
    from qwencli.templates import _compiling, compile_soon

    messages = [Message("user", "hi")]
    source = QWEN25_TEMPLATE + "{# compiled on the side #}"
    compile_soon(source)
    assert ChatTemplate(source).render(messages) == ChatTemplate(QWEN25_TEMPLATE).render(messages)
    assert source not in _compiling  # waited for, then forgotten
    broken = "{% for m in messages %}{{ m.content }}"
    compile_soon(broken)
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate(broken)
