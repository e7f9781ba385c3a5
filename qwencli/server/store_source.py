"""Where `qwen serve` finds models: the ones named at start, then the local store.

A request never downloads (`resolve(name, pull=False)`), and never names a file: paths are
accepted only for models given on the command line (as their file name, or the path exactly as
given). A path from the network would let any client probe and load files on the server.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..errors import ModelNotFound, UsageError
from ..models import resolve as resolve_module
from ..models.names import looks_like_path
from ..resolved import ResolvedModel

log = logging.getLogger("qwencli.server")


def model_id(name: str, resolved: ResolvedModel) -> str:
    """The id clients use: a store name as written, a file by its name without `.gguf`."""
    if looks_like_path(name) and resolved.path is not None:
        return Path(resolved.path).name.removesuffix(".gguf")
    return name


def resolve_local(name: str, backend: str = "auto") -> ResolvedModel:
    """`name` from the store or the disk, never from the network."""
    return resolve_module.resolve(name, pull=False, backend=backend)


def _names_a_file(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.lower().endswith(".gguf") or any(c in name for c in "\\\x00")


class StoreSource:
    def __init__(self, startup: list[str] | tuple[str, ...] = (), *, backend: str = "auto"):
        self._backend = backend
        self._named: dict[str, ResolvedModel] = {}
        self.startup_ids: list[str] = []
        for name in startup:
            resolved = resolve_local(name, backend)
            ident = model_id(name, resolved)
            resolved = dataclasses.replace(resolved, name=ident)
            self._named[ident] = resolved
            self._named[name] = resolved
            self.startup_ids.append(ident)

    def resolve(self, name: str) -> ResolvedModel:
        if name in self._named:
            return self._named[name]
        if _names_a_file(name):
            raise ModelNotFound(f"unknown model {name!r}")
        from ..models.hosted import runs_hosted

        # Fronting a hosted model spends the operator's key: only when named at start.
        if runs_hosted(name):
            raise ModelNotFound(f"{name!r} is not served here", f"start the server with: qwen serve {name}")
        try:
            resolved = resolve_local(name, self._backend)
        except (UsageError, OSError, ValueError):  # a name that does not even parse is just as unknown
            raise ModelNotFound(f"unknown model {name!r}") from None
        if resolved.path is not None and resolved.repo is None:
            raise ModelNotFound(f"unknown model {name!r}")  # the resolver took it for a path on disk
        return resolved

    def names(self) -> list[str]:
        names = list(self.startup_ids)
        try:
            from ..models.store import list_models
        except ImportError:
            return names
        try:
            names += [m.name for m in list_models()]
        except Exception as exc:  # a broken store must not break /v1/models
            log.warning("listing the store failed: %s", exc)
        return list(dict.fromkeys(names))
