"""The llama.cpp backend reuses the KV cache of the previous request and says so truly."""

from __future__ import annotations

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.chat import GenerationOptions, Message, collect


def test_a_repeated_prompt_reuses_all_but_its_last_token(tiny_qwen2_gguf):
    backend = LlamaCppBackend(tiny_qwen2_gguf, LoadOptions(context_length=512))
    try:
        messages = [Message("user", "hi")]
        options = GenerationOptions(temperature=0, max_tokens=4)
        first = collect(backend.chat(messages, options))
        second = collect(backend.chat(messages, options))
        assert first.usage.cached_tokens == 0
        assert second.text == first.text
        # The last prompt token is evaluated again (its logits give the first reply token).
        assert second.usage.cached_tokens == second.usage.prompt_tokens - 1
    finally:
        backend.close()
