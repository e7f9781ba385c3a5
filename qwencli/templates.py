"""Render a model's own chat template, the way transformers' `apply_chat_template` does.

A chat template is code shipped inside a model file: llama-cpp-python's CVE-2024-34359 ran shell
commands through one. We render in jinja2's ImmutableSandboxedEnvironment with the same globals,
filters and extensions as transformers, so a Qwen prompt comes out byte-identical to
`tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)`
(`tests/test_templates.py` checks it against transformers itself).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from .chat import Message, ToolDialect
from .errors import TemplateError
from .thinking import ThinkingControl, initial_mode

#: Used when a GGUF carries no template at all; ChatML is what every Qwen model speaks.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False):
    # transformers' filter: unlike jinja's own, it does not HTML-escape.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """transformers' `{% generation %}` marks assistant text for training masks: a no-op here."""

        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    class TemplateNamespace(jinja2.utils.Namespace):
        # As in transformers: namespaces refuse underscore names, a step towards CPython internals.
        def __setitem__(self, name, value):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")
            super().__setitem__(name, value)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(source)


# Templates being compiled on a side thread (`compile_soon`), by source.
_compiling: dict[str, threading.Thread] = {}


def compile_soon(source: str | None) -> None:
    """Start compiling a template on a side thread: a backend calls this before llama.cpp loads
    the weights (a C call that lets go of the GIL), so importing jinja2 and compiling — 20–70 ms,
    45 ms for Qwen3.5's template — happen during the load instead of after it. The
    `ChatTemplate` of the same source waits for it; an error is reported there, not here."""
    source = source or CHATML

    def compile_quietly() -> None:
        try:
            _compile(source)
        except Exception:
            pass

    thread = threading.Thread(target=compile_quietly, name="compile template", daemon=True)
    _compiling[source] = thread
    thread.start()


class ChatTemplate:
    """A compiled, sandboxed chat template plus the special tokens it may refer to."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = ""):
        self.source = source or CHATML
        self.is_default = source is None
        self.bos_token = bos_token
        self.eos_token = eos_token
        compiling = _compiling.pop(self.source, None)
        if compiling is not None:
            compiling.join()  # then `_compile` answers from its cache
        try:
            self._template = _compile(self.source)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise TemplateError(f"the model's chat template does not compile: {exc}") from None

    @property
    def supports_thinking(self) -> bool:
        return "enable_thinking" in self.source or "<think>" in self.source

    @property
    def tool_dialect(self) -> ToolDialect:
        """Read from the template, not the model's name, so a fine-tune of either kind works:
        a template that writes `<function=` and `<parameter=` teaches XML (llama.cpp's test)."""
        return "xml" if "<function=" in self.source and "<parameter=" in self.source else "hermes"

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.source

    @property
    def supports_developer(self) -> bool:
        """Whether the template renders a `developer` message itself; Qwen's (up to 3.6) raise on
        it, so there it is rendered as the system message OpenAI clients mean by it."""
        return "developer" in self.source

    @property
    def supports_reasoning_effort(self) -> bool:
        return "reasoning_effort" in self.source

    @property
    def supports_preserve_thinking(self) -> bool:
        return "preserve_thinking" in self.source

    @cached_property
    def thinking_switch(self) -> bool:
        """Whether `enable_thinking` changes the prompt: 2507 Instruct never thinks and 2507
        Thinking always does, whatever is asked; Qwen3 and Qwen3.5+ switch."""
        try:
            return self.generation_prefix(think=True) != self.generation_prefix(think=False)
        except TemplateError:
            return False

    @cached_property
    def thinking_control(self) -> ThinkingControl:
        if self.thinking_switch:
            return "switch"
        try:
            starts = initial_mode(self.supports_thinking, self.generation_prefix())
        except TemplateError:
            return "never"
        return "always" if starts == "reasoning" else "never"

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
        think: bool | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        import jinja2

        kwargs: dict[str, Any] = dict(extra or {})
        if think is not None:
            kwargs["enable_thinking"] = think
        chat = [_alias_reasoning(self._as_known_role(m.to_template())) for m in messages]
        try:
            return self._template.render(
                messages=chat,
                tools=list(tools) if tools else None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **kwargs,
            )
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"the model's chat template tried an unsafe operation and was stopped: {exc}",
                "this model file may be hostile; get it from a source you trust",
            ) from None
        except jinja2.exceptions.TemplateError as exc:
            raise TemplateError(f"the model's chat template failed: {exc}") from None
        except Exception as exc:  # a template is code: any runtime error is the template's
            raise TemplateError(f"the model's chat template failed: {type(exc).__name__}: {exc}") from None

    def generation_prefix(self, *, think: bool | None = None) -> str:
        """What the template appends for the assistant turn (e.g. a pre-filled `<think>`)."""
        probe = [Message("user", "\x00")]
        with_prompt = self.render(probe, add_generation_prompt=True, think=think)
        without = self.render(probe, add_generation_prompt=False, think=think)
        return with_prompt[len(without) :] if with_prompt.startswith(without) else ""

    def _as_known_role(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["role"] == "developer" and not self.supports_developer:
            return {**message, "role": "system"}
        return message


def _alias_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    # transformers passes reasoning under both names; templates read either.
    if message.get("reasoning_content") is not None:
        return {"thinking": message["reasoning_content"], **message}
    return message
