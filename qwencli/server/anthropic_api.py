"""Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .registry import Registry


def add_anthropic_routes(app: FastAPI, registry: Registry, start: Any) -> None:
    pass
