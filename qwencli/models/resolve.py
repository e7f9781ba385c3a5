"""Model names → something a backend can load. The one seam between `run`/`serve` and the store.

A local `.gguf` path is used as it is. A name (`qwen2.5-7b`, `qwen:7b`, `owner/repo:Q8_0`) is looked
up in the local store first — no network, no huggingface_hub import — and pulled only when missing
and allowed (`pull=True`; the server passes `pull=False` and never downloads). Which build a name
stands for, GGUF or safetensors, is the routing policy's answer (`backend_route`); `route()` here
hands out the safetensors build when that answer is torch.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ModelNotFound, NotAChatModel
from ..resolved import ResolvedModel
from .names import ModelRef


def resolve(
    name: str,
    *,
    pull: bool = True,
    quant: str | None = None,
    force: bool = False,
    backend: str = "auto",
    host: str | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    for_chat: bool = False,
) -> ResolvedModel:
    """Find `name` locally, or pull it (when `pull`). `quant` overrides a `:quant` in the name
    ('auto' picks the largest that fits); `force` pulls even when the model looks too big;
    `for_chat` refuses a catalog embedding or rerank model before anything downloads.

    `backend` is auto, llama, torch or remote. A hosted name (qwen-max) or a `host` (an
    OpenAI-compatible server) makes the model remote: `api_key` and `base_url` are for that."""
    from . import hosted, names, store

    if backend == "remote" or host is not None or hosted.runs_hosted(name):
        return hosted.resolve(name, host=host, api_key=api_key, base_url=base_url)

    ref = names.parse(name)
    if for_chat and ref.entry is not None and ref.entry.task != "chat":
        raise NotAChatModel.of(name, ref.entry.task)
    if ref.kind == "path":
        assert ref.path is not None
        if not ref.path.exists():
            raise ModelNotFound(f"no such file: {name}", "give a path to a .gguf file, or a model name (qwen list)")
        routed, reason = route(name, ref, backend=backend, pull=pull, force=force)
        if routed is not None:
            return routed
        from .projector import beside

        return ResolvedModel(name=name, format="gguf", path=ref.path, reason=reason, projector=beside(ref.path))
    if quant is not None:
        from .pull import merge_quant

        ref = merge_quant(ref, quant)
    routed, reason = route(name, ref, backend=backend, pull=pull, force=force)
    if routed is not None:
        return routed
    local = store.find(ref)
    if local is not None:
        return _resolved(name, ref, local, reason)
    from .pull import require_gguf_repo

    require_gguf_repo(ref)  # a catalog name with no GGUF build says where its weights are
    if not pull:
        raise ModelNotFound(f"{ref.display} is not downloaded", f"qwen pull {ref.display}")
    from . import hub

    if hub.offline():
        raise ModelNotFound(
            f"{ref.display} is not downloaded, and HF_HUB_OFFLINE=1 forbids the network",
            f"unset HF_HUB_OFFLINE and run qwen pull {ref.display}",
        )
    from .pull import pull as pull_model

    result = pull_model(ref, force=force)
    return _resolved(name, ref, result.model, reason)


def route(
    name: str,
    ref: ModelRef,
    *,
    backend: str = "auto",
    pull: bool = True,
    force: bool = False,
    probe: Callable | None = None,
) -> tuple[ResolvedModel | None, str]:
    """(the safetensors build, reason) when torch runs `ref`, pulled first when missing and `pull`;
    (None, reason) when the GGUF path of `resolve()` goes on."""
    from ..hardware import probe_hardware
    from . import backend_route

    probe = probe or probe_hardware
    decided = backend_route.decide(name, ref, backend, probe)
    if decided.backend == "llama":
        return None, decided.reason
    if ref.kind == "path":
        return ResolvedModel(name=name, format="safetensors", path=ref.path, reason=decided.reason), decided.reason
    local = decided.local
    if local is None:
        if not pull:
            from . import store

            if store.find(ref) is not None:  # no download now (a server, `qwen show`): the GGUF that is here
                return None, (
                    f"{decided.reason}, but only the GGUF is downloaded: llama.cpp"
                    f" (qwen pull --backend torch {ref.display} for torch)"
                )
            raise ModelNotFound(
                f"the safetensors build of {ref.display} is not downloaded", f"qwen pull --backend torch {ref.display}"
            )
        from . import hub

        if hub.offline():
            raise ModelNotFound(
                f"{ref.display} is not downloaded, and HF_HUB_OFFLINE=1 forbids the network",
                f"unset HF_HUB_OFFLINE and run qwen pull --backend torch {ref.display}",
            )
        from .pull_torch import pull as pull_torch

        assert decided.repo is not None
        local = pull_torch(decided.repo, force=force, probe=probe)
    hints = dict(decided.entry.hints) if decided.entry is not None else {}
    hints.update(quant=local.quant, repo=local.repo)
    return ResolvedModel(
        name=name, format=local.format, path=local.path, repo=local.repo, hints=hints, reason=decided.reason
    ), decided.reason


def _resolved(name: str, ref, local, reason: str = "") -> ResolvedModel:
    hints = dict(ref.entry.hints) if ref.entry is not None else {}
    hints.update(quant=local.quant, repo=local.repo)
    return ResolvedModel(name=name, format=local.format, path=local.path, repo=local.repo, hints=hints, reason=reason)
