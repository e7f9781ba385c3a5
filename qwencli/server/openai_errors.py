"""Errors in the OpenAI wire shape: `{"error": {"message", "type", "param", "code"}}`.

Every failure a client can see goes through `ApiError`, so status, type and code stay
consistent. 500s never carry paths or tracebacks (the detail goes to the server log), and say
`x-should-retry: false` when retrying cannot help, because the official SDK retries every 5xx.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from ..errors import QwenError

log = logging.getLogger("qwencli.server")

#: Paths in messages are the server's business, not the client's.
_PATH_RE = re.compile(r"(?:(?<=\s)|^)(?:~|\.{1,2})?/[^\s:'\"]+")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def model_not_found(name: str) -> ApiError:
    return ApiError(
        404,
        f"The model {name!r} does not exist or is not in the local store (the server never downloads; "
        f"run `qwen pull` on the server machine).",
        param="model",
        code="model_not_found",
    )


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "Missing or incorrect API key. Send it as 'Authorization: Bearer <key>'.",
        code="invalid_api_key",
    )


def queue_full(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "The server is busy: the queue for this model is full. Retry later.",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def internal_error(exc: BaseException) -> ApiError:
    """A bug: log it with its traceback under an id, tell the client only the id."""
    incident = uuid.uuid4().hex[:12]
    log.error("internal error %s", incident, exc_info=exc)
    # A bug answers the same way the next time: tell the SDK not to retry.
    return ApiError(
        500, f"Internal server error (incident {incident}).", type="server_error", headers={"x-should-retry": "false"}
    )


def from_qwen_error(exc: QwenError) -> ApiError:
    message = exc.message
    if exc.hint and exc.http_status < 500:
        message = f"{message} ({exc.hint})"
    if exc.http_status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
        message = scrub_paths(message)
    headers = {"x-should-retry": "false"} if exc.http_status >= 500 else None
    return ApiError(exc.http_status, message, type=exc.error_type, param=exc.param, code=exc.code, headers=headers)


def as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QwenError):
        return from_qwen_error(exc)
    return internal_error(exc)


def scrub_paths(message: str) -> str:
    return _PATH_RE.sub("<path>", message)
