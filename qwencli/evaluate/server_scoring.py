"""A model on an evaluation server (`qwen serve`, or any server with its /tokenize and `echo` +
`logprobs` completions) as what the `Scorer` scores with: `qwen eval mc --host URL`.

The server's own tokenizer (`/tokenize`) cuts the pairs, and one completions request per choice
(`echo`, `logprobs: 1`, `max_tokens: 0`) scores the prompt: the same numbers lm-eval-harness gets
from that server, and the same as in-process scoring on the same file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..backends.base import ChunkStream, PulledStream
from ..chat import Chunk, GenerationOptions, TokenLogprob
from ..errors import NetworkError, RemoteError
from ..resolved import Endpoint

TIMEOUT = 600.0


class ServerModel:
    def __init__(self, endpoint: Endpoint, timeout: float = TIMEOUT):
        import httpx

        self._httpx = httpx
        self._model = endpoint.model
        self._v1 = endpoint.base_url
        # /tokenize and /tokenizer_info sit at the server's root, as on llama-server and vLLM.
        self._root = endpoint.base_url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            reply = self._client.request(method, url, **kwargs)
        except self._httpx.HTTPError as exc:
            raise NetworkError(f"{url}: {exc}", "is the server running? (qwen serve MODEL)") from None
        if reply.status_code != 200:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:200]
            raise RemoteError(f"{url} answered {reply.status_code}: {message}")
        return reply.json()

    def tokenize_text(self, text: str, *, add_special: bool) -> list[int]:
        body = {"model": self._model, "content": text, "add_special": add_special}
        return list(self._call("POST", self._root + "/tokenize", json=body)["tokens"])

    def tokenizer_info(self) -> dict[str, Any]:
        return dict(self._call("GET", self._root + "/tokenizer_info", params={"model": self._model}))

    def complete(self, prompt: str | Sequence[int], options: GenerationOptions) -> ChunkStream:
        """Prompt scoring only (`options.prompt_logprobs`), which is all the `Scorer` asks."""
        assert options.prompt_logprobs and not isinstance(prompt, str), "the scorer sends token ids to score"
        tokens = list(prompt)
        body = {
            "model": self._model,
            "prompt": tokens,
            "echo": True,
            "logprobs": options.logprobs or 0,
            "max_tokens": 0,
            "temperature": 0,
        }
        logprobs = self._call("POST", self._v1 + "/completions", json=body)["choices"][0]["logprobs"]
        return PulledStream(_one_chunk(tokens, logprobs))

    def close(self) -> None:
        self._client.close()


def _one_chunk(tokens: list[int], logprobs: dict[str, Any]) -> Iterator[Chunk]:
    values, tops, texts = logprobs["token_logprobs"], logprobs["top_logprobs"], logprobs["tokens"]
    if len(values) != len(tokens):
        raise RemoteError(f"the server scored {len(values)} tokens of a {len(tokens)}-token prompt")
    entries = []
    for token, text, value, top in zip(tokens, texts, values, tops):
        ranked = sorted((top or {}).items(), key=lambda kv: -kv[1])
        entries.append(TokenLogprob(token, text.encode(), value, tuple((-1, t.encode(), lp) for t, lp in ranked)))
    yield Chunk(finish_reason="length", prompt_logprobs=tuple(entries))
