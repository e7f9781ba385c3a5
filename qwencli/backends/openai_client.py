"""A small client for OpenAI-compatible servers: list models, stream a completion as SSE events.

Why not the `openai` SDK: it is a large import for a CLI that must start fast, and what we need
is narrow — one streamed POST, errors turned into one clear line, a bounded retry on 429/503 that
honours `Retry-After`, and a stream that ends without `[DONE]` or a finish reason reported as cut
rather than taken as a complete answer. httpx does the HTTP.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx  # this module loads only when a remote model is used

from ..errors import (
    AuthenticationError,
    ContextOverflow,
    ModelNotFound,
    NetworkError,
    QwenError,
    RateLimited,
    RemoteError,
)
from ..resolved import Endpoint

#: Attempts for a request the server asks us to repeat later (429, 503), and the longest wait.
ATTEMPTS = 4
MAX_WAIT = 30.0
CONNECT_TIMEOUT = 10.0
#: Between two bytes of a stream: a large prompt on a CPU server can take this long to read.
READ_TIMEOUT = 300.0


class StreamCut(RemoteError):
    """The server closed the stream before saying the answer was complete."""


class OpenAIClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
        read_timeout: float = READ_TIMEOUT,
    ):
        self.endpoint = endpoint
        self._sleep = sleep
        self._on_retry = on_retry
        headers = {"Accept": "application/json"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        timeout = httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT)
        # trust_env=False: a proxy from the environment must not see a loopback server's traffic
        # unasked; hosted endpoints go through one when HTTPS_PROXY is set.
        self._http = httpx.Client(
            base_url=endpoint.base_url + "/",
            headers=headers,
            timeout=timeout,
            trust_env=endpoint.provider == "dashscope",
        )

    def close(self) -> None:
        self._http.close()

    # -- requests ----------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]] | None:
        """The server's `/models` list; None when it does not have that endpoint."""
        response = self._send("GET", "models")
        try:
            if response.status_code == 404:
                return None
            self._raise_for_status(response)
            response.read()
            data = _json(response)
        finally:
            response.close()
        items = data.get("data") if isinstance(data, dict) else None
        return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []

    def stream(self, path: str, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """POST `body` with `stream: true`; yield each SSE event's JSON. Errors come out as
        QwenErrors: before the stream from the status, after it from an in-band `error` event or
        a stream cut short. Closing the iterator closes the connection, which stops the server."""
        response = self._send("POST", path, json={**body, "stream": True})
        try:
            self._raise_for_status(response)
            done = False
            for data in _sse_data(response):
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise RemoteError(f"{self._where()} sent a stream event that is not JSON") from None
                if isinstance(event, dict) and event.get("error") is not None:
                    raise _in_band(event["error"], self._where())
                if isinstance(event, dict):
                    yield event
            if not done:
                raise StreamCut(
                    f"the stream from {self._where()} ended before the answer was complete",
                    "the server or the connection dropped it; run it again",
                )
        except httpx.TransportError as exc:
            raise StreamCut(
                f"the stream from {self._where()} was cut before the answer was complete ({_reason(exc)})",
                "run it again",
            ) from None
        finally:
            response.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying what the server asks to retry later; return the open (streaming) response."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                request = self._http.build_request(method, path, **kwargs)
                response = self._http.send(request, stream=True)
            except httpx.ConnectError as exc:
                raise NetworkError(
                    f"cannot connect to {self._where()} ({_reason(exc)})",
                    "is the server running? check the URL (--host / --base-url)",
                ) from None
            except httpx.TimeoutException:
                raise NetworkError(
                    f"{self._where()} did not answer in time", "the server may be overloaded; try again"
                ) from None
            except httpx.TransportError as exc:
                raise NetworkError(f"the connection to {self._where()} failed ({_reason(exc)})") from None
            if response.status_code not in (429, 503) or attempt == ATTEMPTS:
                return response
            wait = retry_after(response.headers.get("retry-after"), default=2.0 ** (attempt - 1))
            response.close()
            if self._on_retry:
                why = "rate-limited" if response.status_code == 429 else "unavailable"
                self._on_retry(
                    f"{self._where()} is {why} ({response.status_code}); retrying in {wait:.0f} s"
                    f" ({attempt}/{ATTEMPTS - 1})"
                )
            self._sleep(wait)
        raise AssertionError("unreachable")

    # -- errors ------------------------------------------------------------------------------

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            response.read()
            message = _error_message(_json(response))
        except Exception:  # a body that is not the OpenAI error shape, or a cut connection
            message = None
        detail = f": {self._redact(message)}" if message else ""
        where = self._where()
        model = self.endpoint.model
        if status in (401, 403):
            raise AuthenticationError(
                f"{where} refused the API key ({status}){detail}", f"check {self.endpoint.key_source}"
            )
        if status == 404:
            hint = (
                "the service may have retired that snapshot; try qwen-max, qwen-plus or qwen-turbo"
                if self.endpoint.provider == "dashscope"
                else f"list what it serves: qwen list --host {where}"
            )
            raise ModelNotFound(f"{where} has no model {model!r} (404){detail}", hint)
        if status == 429:
            raise RateLimited(
                f"{where} is still rate-limiting after {ATTEMPTS} attempts (429){detail}",
                "wait a minute, or check the account's quota",
            )
        if status == 400 and message and "context" in message.lower() and "length" in message.lower():
            raise ContextOverflow(
                f"{where}: the prompt does not fit the model's context{detail}",
                "shorten the input or /clear the conversation",
            )
        if status < 500:
            raise RemoteError(f"{where} rejected the request ({status}){detail}")
        raise RemoteError(f"{where} failed with {status}{detail}", "the server had trouble; try again later")

    def _where(self) -> str:
        return self.endpoint.base_url

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        text = text if not key else text.replace(key, "***")
        return " ".join(text.split())[:300]


def retry_after(value: str | None, *, default: float) -> float:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date), within [0, MAX_WAIT]."""
    seconds = default
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):  # neither seconds nor a date: keep the default
                pass
    return min(max(seconds, 0.0), MAX_WAIT)


def _sse_data(response: httpx.Response) -> Iterator[str]:
    """The `data:` payloads of an SSE stream (multi-line data joined, comments skipped)."""
    lines: list[str] = []
    for line in response.iter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message")
            return str(message) if message else None
        if isinstance(error, str):
            return error
    return None


def _in_band(error: Any, where: str) -> QwenError:
    message = _error_message({"error": error}) or "unknown error"
    return RemoteError(f"{where} stopped the answer with an error: {' '.join(message.split())[:300]}")


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
