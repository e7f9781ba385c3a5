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
