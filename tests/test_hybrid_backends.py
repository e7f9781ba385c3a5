"""The tiny hybrid models generate on both backends, and alike: torch runs the safetensors folder
transformers wrote, llama.cpp runs what its converter made of that folder. Greedy replies to a
first and a second turn must be the same tokens on both (the weights are f32 on both sides and the
margins wide), and the torch backend's second turn must answer as a fresh load does.

The second turn's history holds a written reply, not the model's own: a random model writes
strings (mixed scripts, stray punctuation) on which Hugging Face's tokenizer and llama.cpp's may
split differently when they are read back, which is a tokenizer question, not this test's."""

from __future__ import annotations

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.chat import GenerationOptions, Message, collect
from qwencli.session import Conversation

pytestmark = pytest.mark.slow

GREEDY = GenerationOptions(temperature=0, max_tokens=8)


def two_turns(backend, think):
    """Greedy replies to a first turn and a second one, on one warm backend."""
    options = GREEDY.replace(think=think)
    first = [Message("system", "You are helpful."), Message("user", "Hello there")]
    second = [*first, Message("assistant", "Hello! How can I help?"), Message("user", "And then?")]
    replies = [collect(backend.chat(messages, options)) for messages in (first, second)]
    return [(r.reasoning, r.text, r.finish_reason) for r in replies]


def own_turns(backend, think):
    """A REPL's two turns (the model's own reply in the history): the second turn's messages and reply."""
    conversation = Conversation(backend, system="You are helpful.", options=GREEDY.replace(think=think))
    collect(conversation.ask("Hello there"))
    second = collect(conversation.ask("And then?"))
    return conversation.messages()[:-1], (second.reasoning, second.text, second.finish_reason)


@pytest.mark.parametrize("arch", ["qwen35", "qwen35moe", "qwen3next"])
@pytest.mark.parametrize("think", [None, False], ids=["thinking", "no-think"])
def test_torch_and_llama_cpp_answer_alike_and_torch_turns_answer_as_fresh(qwen_tokenizer, arch, think):
    pytest.importorskip("torch")
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.backends.torch_backend import TorchBackend
    from tests.models import build_hybrid

    folder = build_hybrid("hf", arch, qwen_tokenizer)
    gguf = build_hybrid("gguf", arch, qwen_tokenizer)
    load = LoadOptions(context_length=1024, device="cpu")

    torch_backend = TorchBackend(folder, load)
    try:
        assert torch_backend.info.family == ("qwen3-next" if arch == "qwen3next" else "qwen3.5")
        on_torch = two_turns(torch_backend, think)
        asked, warm = own_turns(torch_backend, think)
    finally:
        torch_backend.close()
    fresh_torch = TorchBackend(folder, load)
    try:
        again = collect(fresh_torch.chat(asked, GREEDY.replace(think=think)))
    finally:
        fresh_torch.close()
    assert (again.reasoning, again.text, again.finish_reason) == warm

    llama = LlamaCppBackend(gguf, LoadOptions(context_length=1024))
    try:
        assert llama.info.architecture == arch
        on_llama = two_turns(llama, think)
    finally:
        llama.close()
    assert on_llama == on_torch
    assert all(text or reasoning for reasoning, text, _ in on_torch)  # it did generate


def test_a_hybrid_model_s_context_is_sized_by_its_attention_layers_only(qwen_tokenizer):
    """Qwen3.5's trained 262,144 tokens; only one layer in four holds a KV cache, so free memory
    buys four times the context a dense model of the same shape would get."""
    from qwencli.backends.llama_load import choose_context_length
    from qwencli.formats.gguf import read_model
    from tests.models import build_hybrid

    model = read_model(build_hybrid("gguf", "qwen35", qwen_tokenizer))
    assert model.context_length == 262144
    per_token = model.kv_bytes_per_token()
    assert per_token == 1 * 2 * (32 + 32) * 2  # 1 attention layer of 4, 2 KV heads of 32, K and V at f16
    n_ctx, reason = choose_context_length(model, None, model.size + per_token * 100_000)
    assert "trained 262144" in reason and n_ctx > 4096
