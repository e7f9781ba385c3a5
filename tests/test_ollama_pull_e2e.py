"""Ollama's /api/pull and /api/delete with `--allow-pull` / `--allow-delete`: the official `ollama`
client pulls the tiny Qwen2 GGUF from the loopback hub (tests/fixtures/hub.py) through our own pull,
chats with it, and deletes it. Without the flags both are refused (tests/test_ollama_e2e.py)."""

from __future__ import annotations

import pytest

from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.store_source import StoreSource
from tests.serving import RunningServer

ollama = pytest.importorskip("ollama")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = "test/Tiny-Qwen2-GGUF"


def test_pull_chat_and_delete_through_the_ollama_client(hub, tiny_qwen2_gguf):
    hub.add_repo(REPO, {"tiny-qwen2-q8_0.gguf": tiny_qwen2_gguf.read_bytes()})
    config = ServerConfig(allow_pull=True, allow_delete=True)
    with RunningServer(create_app(config, StoreSource())) as server:
        client = ollama.Client(host=server.base, timeout=120)
        with pytest.raises(ollama.ResponseError) as err:
            client.chat(model=REPO, messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 404  # nothing is downloaded on a chat request

        statuses = list(client.pull(REPO, stream=True))
        kinds = [s.status for s in statuses]
        assert kinds[0] == "pulling manifest" and kinds[-1] == "success"
        files = [s for s in statuses if s.status.startswith("pulling ") and s.total]
        assert files and files[-1].completed == files[-1].total == tiny_qwen2_gguf.stat().st_size
        assert client.pull(REPO).status == "success"  # again: up to date, not fetched twice

        names = [m.model for m in client.list().models]
        assert any(REPO.lower() in name.lower() for name in names), names
        reply = client.chat(model=REPO, messages=[{"role": "user", "content": "hi"}], options={"temperature": 0})
        assert reply.message.content.startswith("Hello world")

        with pytest.raises(ollama.ResponseError) as err:
            client.pull("test/No-Such-GGUF")
        assert err.value.status_code == 404

        client.delete(REPO)
        assert not any(REPO.lower() in m.model.lower() for m in client.list().models)
        with pytest.raises(ollama.ResponseError) as err:
            client.delete(REPO)
        assert err.value.status_code == 404
