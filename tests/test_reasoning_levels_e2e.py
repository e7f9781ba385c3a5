"""Reasoning levels through a real `qwen serve` with the official `ollama` and `openai` clients:
Ollama's `think: "low"|"medium"|"high"` and Responses' `reasoning.effort` reach a template with
levels (Qwen3.8's, here llama-cpp-python's qwen3.5-0.8b config template, where "low" means no
thinking) as the level itself, and switch thinking on elsewhere (any level but none, as those
APIs mean it). The same tiny Qwen3 weights under the two templates tell them apart. Also Ollama's
`/api/generate` `suffix` and `template`: a clear 400 in Ollama's shape, then a good request."""

from __future__ import annotations

import httpx
import openai
import pytest

from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import QWEN_TOKENIZER, build_tiny, require
from tests.serving import RunningServer, wait_until
from tests.tool_models import build_tiny_with_template

ollama = pytest.importorskip("ollama")
pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0}
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server():
    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    source = StaticSource({
        "levels": build_tiny_with_template("gguf", "qwen3", tokenizer, "qwen3.5-0.8b.json"),
        "switch": build_tiny("gguf", "qwen3", tokenizer),
    })
    with RunningServer(create_app(ServerConfig(max_queue=8), source)) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=60)
        yield running


def ollama_thinks(client, model: str, think) -> bool:
    reply = client.chat(model=model, messages=ASK, think=think, stream=False, options=GREEDY)
    assert reply.message.content.strip() == "Answer"
    return "Reason" in (reply.message.thinking or "")


@pytest.mark.parametrize("think, on_levels, on_switch", [
    ("low", False, True),  # the levels template's own mapping; elsewhere any level thinks
    ("medium", True, True),
    ("high", True, True),
    (False, False, False),
    (True, True, True),
])
def test_ollama_think_levels(server, think, on_levels, on_switch):
    client = ollama.Client(host=server.base)
    assert (ollama_thinks(client, "levels", think), ollama_thinks(client, "switch", think)) == (on_levels, on_switch)


@pytest.mark.parametrize("effort, on_levels, on_switch", [
    ("low", False, True),
    ("minimal", False, True),
    ("high", True, True),
    ("none", False, False),
])
def test_responses_reasoning_effort(server, effort, on_levels, on_switch):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)

    def thinks(model: str) -> bool:
        reply = client.responses.create(model=model, input="hi", reasoning={"effort": effort}, temperature=0)
        assert reply.output_text.strip() == "Answer"
        return any(item.type == "reasoning" for item in reply.output)

    assert (thinks("levels"), thinks("switch")) == (on_levels, on_switch)


def test_generate_suffix_and_template_are_a_400_in_ollamas_shape_then_a_good_request(server):
    client = ollama.Client(host=server.base)
    with pytest.raises(ollama.ResponseError) as suffix:
        client.generate(model="switch", prompt="def f(", suffix="    return 1", options=GREEDY)
    assert suffix.value.status_code == 400 and "suffix" in suffix.value.error
    raw = httpx.post(server.base + "/api/generate", timeout=60,
                     json={"model": "switch", "prompt": "hi", "template": "{{ .Prompt }}", "stream": False})
    assert raw.status_code == 400 and set(raw.json()) == {"error"} and "template" in raw.json()["error"]
    good = client.generate(model="switch", prompt="hi", think=True, stream=False, options=GREEDY)
    assert good.response.strip() == "Answer"
