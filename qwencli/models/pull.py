"""`qwen pull`: name → repo listing → files → checks → verified downloads → visible in the store.

Order matters for "never half-installed": every file is complete and verified as a blob first; only
then do the snapshot links and refs/main appear, which is what makes the model exist for
`list`/`run` and for other HF tools. A byte-split set is joined (and checked as GGUF) before that.
A vision model's projector (`mmproj-*.gguf`, picked by `select.projector_for`) is one more file of
the same pull: downloaded and verified with the weights, linked in the same step, so a VL model is
never visible without the projector it was pulled with (`vision=False` pulls the weights alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import DownloadError, InvalidModelFile, ModelNotFound, QwenError, UnsupportedModel, UsageError
from ..sizes import human_size
from . import download, fit, hub, select, store
from .cache import RepoCache, hub_cache, safe_relpath
from .catalog import GGUF
from .catalog import load as load_catalog
from .names import ModelRef, check_quant, gguf_sources
from .progress import PullProgress


@dataclass(frozen=True)
class PullResult:
    model: store.LocalModel
    transferred: int  # bytes received in this run
    seconds: float
    up_to_date: bool


def pull(
    ref: ModelRef,
    *,
    quant: str | None = None,
    force: bool = False,
    progress: PullProgress | None = None,
    cache_dir: Path | None = None,
    vision: bool = True,
) -> PullResult:
    started = time.monotonic()
    ref = merge_quant(ref, quant)
    require_gguf_repo(ref)
    progress = progress or PullProgress()
    if hub.offline() and (local := store.find(ref, cache_dir)) is not None:
        # Nothing to check it against; what is in the store was verified when it was pulled.
        progress.finish(f"{local.name} is downloaded (HF_HUB_OFFLINE=1: not checked for updates) → {local.path}")
        return PullResult(local, 0, time.monotonic() - started, True)
    ref, listing = pick_source(ref, progress)
    assert ref.repo is not None
    repo = ref.repo
    models = select.gguf_models(listing.files)
    if not models:
        select.choose(listing.files, "q4_k_m", repo=repo)  # raises the right "no GGUF here" error
    if ref.quant == "auto":
        choice = fit.auto(ref, models)
    else:
        wanted = ref.quant or select.default_quant(models, ref.entry.default_quant if ref.entry else None)
        choice = select.choose(listing.files, wanted, repo=repo)
    projector = select.projector_for(listing.files, choice) if vision else None
    for file in (*choice.files, *([projector] if projector else [])):
        safe_relpath(file.path)
    cache = RepoCache(cache_dir or hub_cache(), repo)
    extras = [f for f in listing.files if f.path == "README.md" and f.size < (1 << 20)]
    if _installed(cache, listing.commit, choice, projector):
        return _up_to_date(cache, listing.commit, choice, progress, started)
    if not force:
        fit.check_memory(ref, choice, models)
    fit.check_disk(cache, replace(choice, files=(*choice.files, projector)) if projector else choice)
    cache.prepare()
    with progress, _one_pull_at_a_time(cache, choice, progress):
        if _installed(cache, listing.commit, choice, projector):  # another pull finished it while we waited
            return _up_to_date(cache, listing.commit, choice, progress, started)
        blobs = [download.fetch(cache, listing.commit, f, progress) for f in choice.files]
        linked = (projector, download.fetch(cache, listing.commit, projector, progress)) if projector else None
        for extra in extras:
            _fetch_card(cache, listing.commit, extra, progress)
        if choice.layout == "byte-split":
            blobs = [_join(cache, choice, blobs, progress)]
        store.install(cache, listing.commit, choice, blobs, projector=linked)
        if choice.layout == "byte-split":
            _delete_parts(cache, choice)
    model = _found(cache, listing.commit, choice)
    seconds = time.monotonic() - started
    rate = f" ({human_size(progress.transferred / seconds)}/s)" if progress.transferred and seconds > 0 else ""
    pair = _pair_note(ref, model, vision)
    progress.finish(
        f"pulled {model.name}{pair}{source_note(ref)}: {human_size(model.size)} in {seconds:.1f} s{rate} → {model.path}"
    )
    return PullResult(model, progress.transferred, seconds, False)


def _pair_note(ref: ModelRef, model: store.LocalModel, vision: bool) -> str:
    """What the pull says of the projector. Any the repo carries comes along (a repo named by the
    user may be a VL model the catalog does not know); a catalog VL model whose repo has none is
    text-only, and the one line every pull prints says so."""
    if model.projector is not None:
        return f" with its vision projector {model.projector.name}"
    if vision and ref.entry is not None and ref.entry.vision:
        return f" (text only: {ref.repo} carries no vision projector)"
    return ""


def _up_to_date(
    cache: RepoCache, commit: str, choice: select.GGUFChoice, progress: PullProgress, started: float
) -> PullResult:
    model = _found(cache, commit, choice)
    progress.finish(f"{model.name} is up to date ({human_size(model.size)}) → {model.path}")
    return PullResult(model, 0, time.monotonic() - started, True)


@contextlib.contextmanager
def _one_pull_at_a_time(cache: RepoCache, choice: select.GGUFChoice, progress: PullProgress) -> Iterator[None]:
    """Concurrent pulls of one model take turns: a second one would otherwise join a byte-split set
    whose parts the first is deleting. The per-file locks in `download` still guard each blob."""
    key = hashlib.sha256(f"pull\0{choice.entry_path}".encode()).hexdigest()
    with cache.locked(key, lambda: progress.note(f"waiting for another pull of {choice.entry_path} to finish…")):
        yield


def _fetch_card(cache: RepoCache, commit: str, card: select.RepoFile, progress: PullProgress) -> None:
    """The model card (license and notes for `qwen show`, and for other HF tools) is a nicety: a
    failure to fetch it must not fail a pull whose weights are already verified."""
    try:
        cache.link(commit, card.path, download.fetch(cache, commit, card, progress))
    except QwenError as exc:
        progress.note(f"skipped {card.path}: {exc.message}")


def pick_source(ref: ModelRef, progress: PullProgress) -> tuple[ModelRef, hub.Listing]:
    """The repo to pull `ref` from, with its listing. A catalog name with several GGUF sources
    (`catalog.SOURCE_PREFERENCE`) takes the first that exists on the hub and has the quant asked for,
    or else the name's default quant; when none has the default, the first with any GGUF."""
    sources = gguf_sources(ref)
    if len(sources) <= 1:
        assert ref.repo is not None
        return ref, hub.fetch_listing(ref.repo)
    assert ref.entry is not None
    wanted = ref.quant if ref.quant and ref.quant != "auto" else ref.entry.default_quant
    tried: list[tuple[ModelRef, hub.Listing, list[select.GGUFChoice]]] = []
    missing: list[str] = []
    for entry in sources:
        try:
            listing = hub.fetch_listing(entry.repo)
        except ModelNotFound:
            missing.append(entry.repo)
            continue
        models = select.gguf_models(listing.files)
        candidate = replace(ref, repo=entry.repo, entry=entry)
        if models and (ref.quant == "auto" or wanted in {m.quant for m in models}):
            _say_skipped(progress, missing + [r.repo or "" for r, _, _ in tried], candidate)
            return candidate, listing
        tried.append((candidate, listing, models))
    if ref.quant and ref.quant != "auto":
        found = "; ".join(f"{r.repo}: {', '.join(select.available_quants(m)) or 'no GGUF'}" for r, _, m in tried)
        raise ModelNotFound(
            f"no source of {ref.entry.name} has a {ref.quant} GGUF"
            + (f" ({', '.join(missing)} not on the hub)" if missing else ""),
            f"available: {found}" if found else "none of its repos is on the hub; name one as owner/repo:QUANT",
        )
    for candidate, listing, models in tried:
        if models:
            _say_skipped(progress, missing, candidate)
            return candidate, listing
    raise ModelNotFound(
        f"none of the GGUF repos of {ref.entry.name} is on the hub ({', '.join(missing)})"
        if not tried
        else f"none of the GGUF repos of {ref.entry.name} holds a GGUF file",
        "name a repo yourself as owner/repo[:QUANT]",
    )


def _say_skipped(progress: PullProgress, skipped: list[str], chosen: ModelRef) -> None:
    if skipped:
        progress.note(f"{', '.join(skipped)}: not on the hub or without that quant; using {chosen.repo}")


def source_note(ref: ModelRef) -> str:
    """ " from unsloth/…-GGUF (a community GGUF, not Qwen's own)" for a catalog name pulled from a
    community repo; "" for Qwen's own files and for repos the user named."""
    if ref.kind != "catalog" or ref.entry is None or ref.entry.official:
        return ""
    return f" from {ref.repo} (a community GGUF, not Qwen's own)"


def merge_quant(ref: ModelRef, quant: str | None) -> ModelRef:
    if ref.kind == "path":
        raise UsageError(
            f"qwen pull takes a model name, and {ref.text!r} is a path",
            "a local .gguf file needs no pull: qwen run PATH",
        )
    if quant is None:
        return ref
    quant = check_quant(quant, quant)
    if ref.quant and ref.quant != quant:
        raise UsageError(f"{ref.text!r} names quant {ref.quant} but --quant says {quant}")
    return ref.with_quant(quant)


def require_gguf_repo(ref: ModelRef) -> str:
    """The GGUF repo to pull from; a catalog name without one says where its weights are."""
    if ref.kind == "catalog" and ref.entry is not None and ref.entry.format != GGUF:
        torch = [e for e in load_catalog().rows(ref.entry.name) if e.format != GGUF]
        repos = ", ".join(e.repo for e in torch[:3])
        raise UnsupportedModel(
            f"{ref.entry.name} has no GGUF build (Qwen published only safetensors: {repos})",
            "the torch backend runs it on a CUDA GPU: qwen run … --backend torch (pip install 'qwencli[torch]')",
        )
    assert ref.repo is not None
    return ref.repo


def _installed(
    cache: RepoCache, commit: str, choice: select.GGUFChoice, projector: select.RepoFile | None = None
) -> bool:
    paths = [choice.entry_path] if choice.layout == "byte-split" else [f.path for f in choice.files]
    paths += [projector.path] if projector else []
    return all(cache.pointer(commit, p).exists() for p in paths)


def _found(cache: RepoCache, commit: str, choice: select.GGUFChoice) -> store.LocalModel:
    entry = cache.pointer(commit, choice.entry_path)
    for model in store.repo_models(cache):
        if model.path == entry:
            return model
    raise DownloadError(f"{choice.entry_path} was installed but cannot be found in {cache.folder}")


def _join(cache: RepoCache, choice: select.GGUFChoice, parts: list[Path], progress: PullProgress) -> Path:
    """Concatenate a byte-split set (`x.gguf.a`, `.b`, …) into one blob named by its sha256."""
    from ..formats.gguf import read_gguf_file

    # Called under _one_pull_at_a_time, so no other process writes this temporary file.
    key = hashlib.sha256("".join(download.expected_etag(f) or "" for f in choice.files).encode()).hexdigest()
    progress.note(f"joining {len(parts)} parts into {choice.entry_path}")
    tmp = cache.partial(key)
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(8 << 20):
                    out.write(block)
                    digest.update(block)
    blob = cache.blob(digest.hexdigest())
    try:
        read_gguf_file(tmp)
    except InvalidModelFile as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"the joined parts of {choice.entry_path} are not a valid GGUF file: {exc.message}",
            "the repo's parts do not belong together; report it to its owner",
        ) from None
    os.chmod(tmp, 0o644)
    os.replace(tmp, blob)
    return blob


def _delete_parts(cache: RepoCache, choice: select.GGUFChoice) -> None:
    """The joined file is what runs; the parts would only double the disk used."""
    used = store.referenced_blobs(cache)
    for file in choice.files:
        etag = download.expected_etag(file)
        if etag and cache.blob(etag) not in used:
            cache.blob(etag).unlink(missing_ok=True)
