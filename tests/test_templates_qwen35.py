"""Qwen3.5 / 3.6 / 3.8-style templates (the real ones, from the llama-cpp-python sdist) render
byte-identical to transformers' apply_chat_template, with every thinking control; and the
controls reach the template the way each template understands them. Tool calls and tool results
are the tool-call dialect tests' business."""

from __future__ import annotations

import pytest

from qwencli.backends.pipeline import as_rendered, chat_prompt, reply_mode
from qwencli.chat import GenerationOptions, Message
from qwencli.templates import ChatTemplate
from qwencli.thinking import initial_mode
from tests.fixtures import tiny_hybrid

CONVERSATIONS = {
    "plain": [Message("user", "What is the capital of France?")],
    "system": [Message("system", "You are terse."), Message("user", "Hi!")],
    "multi-turn": [
        Message("system", "You are a helpful assistant."),
        Message("user", "My name is Bob."),
        Message("assistant", "Nice to meet you, Bob.", reasoning="The user said their name."),
        Message("user", "What is my name?"),
    ],
    "reasoning inline in content": [
        Message("user", "2+2?"),
        Message("assistant", "<think>\nTwo and two.\n</think>\n\n4"),
        Message("user", "And 3+3?"),
    ],
    "after the last query": [  # reasoning of a reply after the last user message is always kept
        Message("user", "2+2?"),
        Message("assistant", "4", reasoning="Two and two."),
    ],
}

#: What a caller can pass, as transformers takes it (chat_template kwargs).
CONTROLS = {
    "default": {},
    "thinking on": {"enable_thinking": True},
    "thinking off": {"enable_thinking": False},
    "preserve_thinking": {"preserve_thinking": True},
    "effort low": {"reasoning_effort": "low"},
    "effort minimal": {"reasoning_effort": "minimal"},
    "effort medium": {"reasoning_effort": "medium"},
    "effort high": {"reasoning_effort": "high"},
    "effort high, thinking off": {"reasoning_effort": "high", "enable_thinking": False},
}


@pytest.fixture(scope="module")
def templates() -> dict[str, str]:
    return {
        "qwen3.5": tiny_hybrid.qwen35_template(),
        "qwen3.6": tiny_hybrid.server_config_template("qwen3.6-27b"),
        "qwen3.5-0.8b (reasoning_effort)": tiny_hybrid.server_config_template("qwen3.5-0.8b"),
    }


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_tokenizer):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(qwen_tokenizer))


def _hf(messages):
    out = []
    for m in messages:
        d = {"role": m.role, "content": m.content}
        if m.reasoning is not None:
            d["reasoning_content"] = m.reasoning
        out.append(d)
    return out


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("template_name", ["qwen3.5", "qwen3.6", "qwen3.5-0.8b (reasoning_effort)"])
def test_render_matches_transformers(hf_tokenizer, templates, template_name, name, control):
    source = templates[template_name]
    kwargs = CONTROLS[control]
    expected = hf_tokenizer.apply_chat_template(
        _hf(CONVERSATIONS[name]), add_generation_prompt=True, tokenize=False, chat_template=source, **kwargs
    )
    extra = {k: v for k, v in kwargs.items() if k != "enable_thinking"}
    ours = ChatTemplate(source, eos_token="<|im_end|>").render(
        CONVERSATIONS[name], think=kwargs.get("enable_thinking"), extra=extra
    )
    assert ours == expected


def _options_for(kwargs: dict) -> GenerationOptions:
    return GenerationOptions(
        think=kwargs.get("enable_thinking"),
        preserve_thinking=kwargs.get("preserve_thinking"),
        reasoning_effort=kwargs.get("reasoning_effort"),
    )


@pytest.mark.parametrize("control", CONTROLS)
def test_generation_options_reach_a_template_that_knows_them_unchanged(hf_tokenizer, templates, control):
    """Through qwencli's options (what --think, /set think and the server set), the 3.6 template
    gets exactly the kwargs transformers would."""
    source = templates["qwen3.6"]
    kwargs = CONTROLS[control]
    messages = CONVERSATIONS["multi-turn"]
    expected = hf_tokenizer.apply_chat_template(
        _hf(messages), add_generation_prompt=True, tokenize=False, chat_template=source, **kwargs
    )
    assert chat_prompt(ChatTemplate(source), messages, _options_for(kwargs)) == expected


@pytest.mark.parametrize(("effort", "thinks"), [("none", False), ("minimal", False), ("low", False),
                                                 ("medium", True), ("high", True)])
def test_reasoning_effort_on_a_template_without_it_switches_thinking(hf_tokenizer, templates, effort, thinks):
    source = templates["qwen3.5"]
    assert "reasoning_effort" not in source
    messages = CONVERSATIONS["plain"]
    prompt = chat_prompt(ChatTemplate(source), messages, GenerationOptions(reasoning_effort=effort))
    expected = hf_tokenizer.apply_chat_template(
        _hf(messages), add_generation_prompt=True, tokenize=False, chat_template=source, enable_thinking=thinks
    )
    assert prompt == expected
    assert reply_mode(ChatTemplate(source), prompt, GenerationOptions()) == ("reasoning" if thinks else "text")


@pytest.mark.parametrize("template_name", ["qwen3.5", "qwen3.6"])
def test_developer_role_is_rendered_as_system_where_the_template_lacks_it(hf_tokenizer, templates, template_name):
    source = templates[template_name]
    template = ChatTemplate(source)
    assert not template.supports_developer
    ours = template.render([Message("developer", "Answer in French."), Message("user", "Hi")])
    expected = hf_tokenizer.apply_chat_template(
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True, tokenize=False, chat_template=source,
    )
    assert ours == expected


def test_developer_role_reaches_a_template_that_has_it(hf_tokenizer):
    source = (
        "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        "{# roles: system, developer, user, assistant #}"
    )
    messages = [Message("developer", "Be brief."), Message("user", "Hi")]
    expected = hf_tokenizer.apply_chat_template(_hf(messages), add_generation_prompt=True, tokenize=False,
                                                chat_template=source)
    assert ChatTemplate(source).render(messages) == expected
    assert "<|im_start|>developer\n" in expected


def test_qwen35_generation_prompts_open_thinking_and_the_splitter_follows(templates):
    template = ChatTemplate(templates["qwen3.5"])
    on, off = template.generation_prefix(think=True), template.generation_prefix(think=False)
    assert on == "<|im_start|>assistant\n<think>\n"
    assert off == "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert initial_mode(True, on) == "reasoning"
    assert initial_mode(True, off) == "text"
    # The template's own default (no enable_thinking) is what a reply starts in unless asked.
    assert initial_mode(True, template.generation_prefix()) == "reasoning"
    assert template.thinking_switch


def test_a_template_without_a_switch_says_so(tiny_qwen2_gguf):
    from tests.fixtures.tiny_qwen import QWEN25_TEMPLATE

    assert not ChatTemplate(QWEN25_TEMPLATE).thinking_switch
    thinking_2507 = "{% for m in messages %}{{ m.content }}{% endfor %}<|im_start|>assistant\n<think>\n"
    assert not ChatTemplate(thinking_2507).thinking_switch


def test_sampling_follows_the_mode_the_prompt_was_rendered_in(templates):
    template = ChatTemplate(templates["qwen3.5"])
    messages = CONVERSATIONS["plain"]
    for options, think in [(GenerationOptions(), True), (GenerationOptions(reasoning_effort="low"), False),
                           (GenerationOptions(think=False), False), (GenerationOptions(response_format="json"), False)]:
        prompt = chat_prompt(template, messages, options)
        assert as_rendered(options, reply_mode(template, prompt, options)).think is think
