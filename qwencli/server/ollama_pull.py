"""Ollama's /api/pull and /api/delete through our own pull and store."""

from __future__ import annotations

from fastapi.responses import Response

from .openai_errors import ApiError


async def pull_response(name: str, *, stream: bool) -> Response:
    raise ApiError(501, "pulling over the API is not implemented yet")


def delete_model(name: str) -> None:
    raise ApiError(501, "deleting over the API is not implemented yet")
