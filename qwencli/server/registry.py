"""The models a server has loaded: loading on first use, keep-alive, context reloads.

Where names come from (`ModelSource`) and how a model loads (`Loader`) are injected, so tests
give fixtures (`static_source`) and fakes while `qwen serve` wires in the local store
(`store_source`) and the real backends (`loader`).
A name the source does not know is a 404: the server never downloads on a request.

Loading blocks (a child-process probe, then llama.cpp), so it runs on a worker thread; several
requests for a model being loaded share the one load. Each loaded model has its own FIFO
(`Scheduler`); a model whose line is empty for `keep_alive` seconds is unloaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..backends.base import Backend, LoadOptions, ModelInfo
from ..backends.local import KV_SHARE_REQUESTED
from ..errors import ModelNotFound, QwenError
from ..resolved import ResolvedModel
from .config import ServerConfig
from .loader import Loader, default_loader
from .openai_errors import ApiError, bad_request, model_not_found
from .probe import Prober
from .scheduler import Scheduler, Ticket

log = logging.getLogger("qwencli.server")
#: The hint that makes a load one for embeddings (`loader.default_loader`).
EMBEDDING = "embedding"


class ModelSource(Protocol):
    def resolve(self, name: str) -> ResolvedModel:
        """The model `name` refers to; raise ModelNotFound if it is not available locally."""
        ...

    def names(self) -> list[str]:
        """Models a client may ask for (for `/v1/models`)."""
        ...


@dataclass(eq=False)
class LoadedModel:
    key: str
    name: str
    resolved: ResolvedModel
    backend: Backend
    scheduler: Scheduler
    load: LoadOptions
    kv_bytes_per_token: int | None = None
    loaded_at: float = field(default_factory=time.time)
    #: Seconds idle before unloading, when a request set it (Ollama's `keep_alive`); None: never.
    keep_alive: float | None | Literal["server"] = "server"

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    @property
    def memory_bytes(self) -> int:
        """Weights plus KV cache, estimated from the file: what unloading would give back."""
        info = self.info
        kv = (self.kv_bytes_per_token or 0) * info.context_length * self.backend.slots
        return (info.size_bytes or 0) + kv


@dataclass
class Checkout:
    """A request's place in a model's line; `reload_to` set when it must change the context."""

    model: LoadedModel
    ticket: Ticket
    reload_to: int | None = None


class Registry:
    def __init__(
        self,
        config: ServerConfig,
        source: ModelSource,
        loader: Loader = default_loader,
        prober: Prober | None = None,
        memory: Callable[[], int] | None = None,
    ):
        self.config = config
        self.source = source
        self.loader = loader
        self.prober = prober
        self._memory = memory or _available_memory
        self._models: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self.ready = not config.startup_models
        self.startup_error: str | None = None
        self._closed = False

    # -- lookup --------------------------------------------------------------------------

    async def resolve(self, name: str) -> ResolvedModel:
        try:
            return await asyncio.to_thread(self.source.resolve, name)
        except ModelNotFound:
            raise model_not_found(name) from None

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for name in [*self.source.names(), *(m.name for m in self._models.values())]:
            seen.setdefault(name, None)
        return list(seen)

    def loaded(self) -> list[LoadedModel]:
        return list(self._models.values())

    def loading(self) -> list[str]:
        return list(self._loading)

    # -- checkout ------------------------------------------------------------------------

    async def checkout(self, name: str, *, num_ctx: int | None = None) -> Checkout:
        """Load `name` if needed and take a place in its line (QueueFull when the line is full)."""
        resolved = await self.resolve(name)
        model = await self._get(resolved, name)
        reload_to = None
        if num_ctx is not None and num_ctx != model.info.context_length:
            self._check_context_fits(model, num_ctx)
            reload_to = num_ctx
        # No await between here and the caller owning the ticket: keep-alive cannot unload it.
        ticket = model.scheduler.enqueue(exclusive=reload_to is not None)
        return Checkout(model, ticket, reload_to)

    async def _get(self, resolved: ResolvedModel, name: str) -> LoadedModel:
        key = _key(resolved)
        while True:
            if key in self._models:
                return self._models[key]
            if self._closed:
                raise ApiError(503, "The server is shutting down.", type="server_error")
            pending = self._loading.get(key)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                self._loading[key] = pending
                try:
                    try:
                        model = await self._load(key, resolved, name)
                    except ModelNotFound:  # the file went away since it was listed
                        raise model_not_found(name) from None
                    self._models[key] = model
                    pending.set_result(None)
                    return model
                except BaseException as exc:
                    pending.set_exception(exc if isinstance(exc, Exception) else RuntimeError("load cancelled"))
                    pending.exception()  # retrieved: no "never retrieved" warning when nobody waits
                    raise
                finally:
                    self._loading.pop(key, None)
            await asyncio.shield(pending)

    async def _load(self, key: str, resolved: ResolvedModel, name: str) -> LoadedModel:
        await self._make_room()
        log.info("loading %s", name)
        started = time.perf_counter()
        backend, kv = await asyncio.to_thread(self._load_sync, resolved, self.config.load)
        log.info("loaded %s in %.2f s (context %d)", name, time.perf_counter() - started, backend.info.context_length)
        return LoadedModel(
            key=key,
            name=name,
            resolved=resolved,
            backend=backend,
            scheduler=Scheduler(self.config.parallel, self.config.max_queue),
            load=self.config.load,
            kv_bytes_per_token=kv,
        )

    def _load_sync(self, resolved: ResolvedModel, load: LoadOptions) -> tuple[Backend, int | None]:
        kv = None
        if resolved.format == "gguf" and resolved.path is not None:
            from ..backends import refuse_unless_chat
            from ..formats.gguf import read_model

            gguf = read_model(resolved.path)  # validates the header first
            if not resolved.hints.get(EMBEDDING):
                refuse_unless_chat(resolved, gguf)  # a 400 naming /v1/embeddings or /v1/rerank
            kv = gguf.kv_bytes_per_token()
            if self.prober is not None:
                self.prober.check(resolved.path)
        return self.loader(resolved, load, self.config.parallel), kv

    async def _make_room(self) -> None:
        idle = sorted((m for m in self._models.values() if m.scheduler.idle), key=lambda m: m.scheduler.last_active)
        while len(self._models) >= self.config.max_loaded_models and idle:
            await self._unload(idle.pop(0))

    async def checkout_embedder(self, name: str) -> Checkout:
        """`name` loaded for embeddings (apart from a chat load of the same file), and a place
        in that load's line."""
        resolved = await self.resolve(name)
        if resolved.format != "gguf" or resolved.path is None:
            raise bad_request(f"{name}: embeddings need a GGUF model on this server", param="model")
        model = await self._get(_for_embeddings(resolved), name)
        return Checkout(model, model.scheduler.enqueue())

    # -- context -------------------------------------------------------------------------

    def _check_context_fits(self, model: LoadedModel, num_ctx: int) -> None:
        per_token = model.kv_bytes_per_token
        if not per_token:
            return
        slots = model.backend.slots
        need = per_token * num_ctx * slots
        have = self._memory() + per_token * model.info.context_length * slots  # the old cache goes
        if need > have * KV_SHARE_REQUESTED:
            raise bad_request(
                f"num_ctx {num_ctx} needs {need / 2**30:.1f} GiB for its KV cache but only "
                f"{have * KV_SHARE_REQUESTED / 2**30:.1f} GiB is available on the server",
                param="num_ctx",
            )

    async def reload(self, checkout: Checkout) -> None:
        """Reload with the checkout's context; the caller holds every slot of the model."""
        model, n_ctx = checkout.model, checkout.reload_to
        if n_ctx is None or n_ctx == model.info.context_length:
            return
        old_load = model.load
        new_load = dataclasses.replace(old_load, context_length=n_ctx)
        log.info("reloading %s with context %d", model.name, n_ctx)
        await asyncio.to_thread(model.backend.close)
        try:
            model.backend = await asyncio.to_thread(self.loader, model.resolved, new_load, self.config.parallel)
            model.load = new_load
        except BaseException:
            try:  # put the model back as it was, so the requests in line still get served
                model.backend = await asyncio.to_thread(self.loader, model.resolved, old_load, self.config.parallel)
            except Exception:
                self._models.pop(model.key, None)
            raise

    # -- startup, keep-alive, shutdown ---------------------------------------------------

    async def preload(self) -> None:
        try:
            for name in self.config.startup_models:
                resolved = await self.resolve(name)
                if await asyncio.to_thread(_task_of, resolved) != "chat":  # served as it is meant to be
                    resolved = _for_embeddings(resolved)
                await self._get(resolved, name)
        except Exception as exc:
            self.startup_error = exc.message if isinstance(exc, (QwenError, ApiError)) else repr(exc)
            raise
        self.ready = True

    def keep_alive_of(self, model: LoadedModel) -> float | None:
        return self.config.keep_alive if model.keep_alive == "server" else model.keep_alive

    def set_keep_alive(self, model: LoadedModel, seconds: float | None) -> None:
        """A request's own keep-alive for `model` (Ollama's `keep_alive`; 0 unloads it once idle)."""
        model.keep_alive = seconds

    async def unload(self, name: str) -> None:
        """Unload `name` now if it is loaded and idle (else once idle: keep-alive 0)."""
        resolved = await self.resolve(name)
        model = self._models.get(_key(resolved))
        if model is None:
            return
        model.keep_alive = 0.0
        await self._unload(model)

    async def unload_idle(self) -> None:
        now = time.monotonic()
        for model in list(self._models.values()):
            keep_alive = self.keep_alive_of(model)
            if keep_alive is None:
                continue
            if model.scheduler.idle and now - model.scheduler.last_active >= keep_alive:
                await self._unload(model)

    async def run_keep_alive(self) -> None:
        # Runs even with --keep-alive -1: a request may still set a model's own keep-alive.
        keep_alive = self.config.keep_alive
        tick = min(max(keep_alive / 4, 0.05), 1.0) if keep_alive is not None else 1.0
        while True:
            await asyncio.sleep(tick)
            try:
                await self.unload_idle()
            except Exception:
                log.exception("unloading idle models failed")

    async def _unload(self, model: LoadedModel) -> None:
        if self._models.get(model.key) is not model or not model.scheduler.idle:
            return
        del self._models[model.key]  # before any await: new requests load a fresh copy
        log.info("unloading %s", model.name)
        await asyncio.to_thread(model.backend.close)

    async def close(self) -> None:
        self._closed = True
        models, self._models = list(self._models.values()), {}
        for model in models:
            try:
                await asyncio.to_thread(model.backend.close)
            except Exception:
                log.exception("closing %s failed", model.name)

    def until(self, model: LoadedModel) -> float | None:
        """Wall-clock time the model will be unloaded if nothing else arrives; None: never."""
        keep_alive = self.keep_alive_of(model)
        if keep_alive is None:
            return None
        idle_for = 0.0 if not model.scheduler.idle else time.monotonic() - model.scheduler.last_active
        return time.time() + max(keep_alive - idle_for, 0.0)


def _for_embeddings(resolved: ResolvedModel) -> ResolvedModel:
    return dataclasses.replace(resolved, hints={**resolved.hints, EMBEDDING: True})


def _task_of(resolved: ResolvedModel) -> str:
    from ..backends import task_of

    return task_of(resolved)


def _key(resolved: ResolvedModel) -> str:
    if resolved.path is not None:
        return str(resolved.path.resolve()) + (" (embeddings)" if resolved.hints.get(EMBEDDING) else "")
    return f"{resolved.format}:{resolved.repo or resolved.name}"


def _available_memory() -> int:
    from ..hardware import available_memory

    return available_memory()
