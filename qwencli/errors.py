"""Typed errors. Each carries a one-line message and a hint naming what to do next.

The CLI turns them into stderr + exit status in one place (`qwencli.cli.errors`); the server
turns them into OpenAI error bodies. Anything that is not a QwenError is a bug and keeps its
traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class QwenError(Exception):
    """An error the user can act on."""

    exit_code = EXIT_ERROR
    #: OpenAI error `type` / HTTP status when the server reports it.
    http_status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, hint: str | None = None, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param


class UsageError(QwenError):
    exit_code = EXIT_USAGE
    http_status = 400
    error_type = "invalid_request_error"


class ModelNotFound(QwenError):
    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class InvalidModelFile(QwenError):
    """The file exists but is not a model we can load (not GGUF, truncated, corrupt)."""

    http_status = 500


class UnsupportedModel(QwenError):
    http_status = 400
    error_type = "invalid_request_error"
    code = "model_not_supported"


class NotAChatModel(UnsupportedModel):
    """An embedding or rerank model asked to chat: the message says what it is and where it serves."""

    code = "not_a_chat_model"

    @classmethod
    def of(cls, name: str, task: str) -> NotAChatModel:
        if task == "rerank":
            return cls(f"{name} is a reranker, not a chat model", f"qwen serve {name}, then POST /v1/rerank")
        return cls(
            f"{name} is an embedding model, not a chat model",
            f"qwen embed {name} TEXT, or qwen serve {name} and POST /v1/embeddings",
        )


class TemplateError(QwenError):
    """The model's chat template failed or tried to leave its sandbox."""

    http_status = 500


class ContextOverflow(QwenError):
    http_status = 400
    error_type = "invalid_request_error"
    code = "context_length_exceeded"


class BackendUnavailable(QwenError):
    """A backend's libraries or hardware are missing (e.g. torch without the extra)."""

    http_status = 500


class NetworkError(QwenError):
    http_status = 502


class DownloadError(QwenError):
    pass


class RemoteError(QwenError):
    """An OpenAI-compatible server answered with an error."""

    http_status = 502


class AuthenticationError(QwenError):
    """A key is missing, or a server refused it."""

    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class RateLimited(RemoteError):
    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class InvalidImage(QwenError):
    """An attached image that is not one, is cut short, or is too large to decode safely."""

    exit_code = EXIT_USAGE
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_image"


class NoVision(UnsupportedModel):
    """An image sent to a model loaded without a vision projector."""

    code = "model_not_multimodal"
