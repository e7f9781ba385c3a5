"""The models on this machine: what the Hugging Face cache holds, seen as models.

No index of our own: the cache is the truth, so a model pulled by `hf download`, transformers or
llama.cpp into the same cache shows up too, and `rm` here is seen there. A snapshot file exists only
once its bytes are complete and verified (see `pull`), so "in a snapshot" means "installed".
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UsageError
from ..formats.hf_folder import PICKLE_WEIGHTS
from ..resolved import PICKLE, SAFETENSORS, TRANSFORMERS_FORMATS, Format
from . import catalog as catalog_module
from .cache import RepoCache, hub_cache, repo_from_folder
from .names import ModelRef, gguf_sources
from .select import GGUFChoice, RepoFile, gguf_models, projector_for


@dataclass(frozen=True)
class LocalModel:
    """One model in the store. `store.list_models()` returns these (the server codes against them)."""

    name: str  # "qwen2.5-0.5b:q4_k_m", or "owner/repo:quant" outside the catalog
    repo: str
    quant: str
    format: Format  # "gguf", "safetensors" or "pickle"
    size: int  # bytes on disk (each blob counted once)
    modified: float  # POSIX time of the newest file
    path: Path  # what a backend loads: the .gguf (first shard) or the snapshot folder
    files: tuple[Path, ...] = field(repr=False)  # snapshot paths of every file
    commit: str = ""
    layout: str = "single"  # single, shards, byte-split (joined), or folder
    #: The vision projector (mmproj GGUF) in the same snapshot (`select.projector_for`), if any.
    projector: Path | None = None

    @property
    def vision(self) -> bool:
        """It reads images: a projector beside the GGUF, or a folder's own vision tower (torch)."""
        if self.projector is not None:
            return True
        from ..formats.hf_folder import has_vision_tower

        return self.format == "safetensors" and self.path.is_dir() and has_vision_tower(self.path)

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "repo": self.repo,
            "quant": self.quant,
            "format": self.format,
            "size": self.size,
            "modified": self.modified,
            "path": str(self.path),
            "commit": self.commit,
            "files": [str(f) for f in self.files],
            "projector": str(self.projector) if self.projector else None,
        }


def list_models(cache_dir: Path | None = None) -> list[LocalModel]:
    """Every model in the cache, sorted by name. Corrupt or foreign folders are skipped."""
    root = cache_dir or hub_cache()
    models: list[LocalModel] = []
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    for folder in folders:
        repo = repo_from_folder(folder.name)
        if repo is not None:
            models.extend(repo_models(RepoCache(root, repo)))
    return sorted(models, key=lambda m: m.name)


def repo_models(cache: RepoCache) -> list[LocalModel]:
    """The models in one cached repo, newest snapshot first for each (quant, file)."""
    seen: dict[tuple, LocalModel] = {}
    for commit in _commits(cache):
        for model in _snapshot_models(cache, commit):
            seen.setdefault((model.format, model.quant, model.path.relative_to(cache.snapshot(commit))), model)
    return list(seen.values())


def find(ref: ModelRef, cache_dir: Path | None = None) -> LocalModel | None:
    """The installed model `ref` names, without touching the network (None if not installed). A
    catalog name with several GGUF sources is found in whichever of them it was pulled from."""
    repos = [e.repo for e in gguf_sources(ref)] or ([ref.repo] if ref.repo else [])
    for repo in repos:
        found = _find_in(RepoCache(cache_dir or hub_cache(), repo), ref)
        if found is not None:
            return found
    return None


def _find_in(cache: RepoCache, ref: ModelRef) -> LocalModel | None:
    if not cache.snapshots.is_dir():
        return None
    models = [m for m in repo_models(cache) if m.format == "gguf"]
    if not models:
        return None
    if ref.quant and ref.quant != "auto":
        matches = [m for m in models if m.quant == ref.quant]
        return matches[0] if matches else None
    preferred = ref.entry.default_quant if ref.entry and ref.entry.format == "gguf" else None
    if preferred and any(m.quant == preferred for m in models):
        return next(m for m in models if m.quant == preferred)
    return max(models, key=lambda m: m.modified)  # the one pulled last


def find_torch_build(repo: str | None, cache_dir: Path | None = None) -> LocalModel | None:
    """The downloaded safetensors (or pickle) build of `repo`; None when there is none. No network."""
    if not repo:
        return None
    cache = RepoCache(cache_dir or hub_cache(), repo)
    if not cache.snapshots.is_dir():
        return None
    return next((m for m in repo_models(cache) if m.format in TRANSFORMERS_FORMATS), None)


def _commits(cache: RepoCache) -> list[str]:
    """Snapshot commits, the one refs/main names first, then newest first."""
    try:
        commits = [p.name for p in cache.snapshots.iterdir() if p.is_dir()]
    except OSError:
        return []
    main = cache.read_ref()
    commits = [c for c in commits if len(c) == 40]
    commits.sort(key=lambda c: (c != main, -_mtime(cache.snapshots / c)))
    return commits


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _snapshot_files(cache: RepoCache, commit: str) -> dict[str, Path]:
    snapshot = cache.snapshot(commit)
    files: dict[str, Path] = {}
    for folder, _dirs, names in os.walk(snapshot):
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            if path.exists():  # a broken symlink is not a file
                files[path.relative_to(snapshot).as_posix()] = path
    return files


def _snapshot_models(cache: RepoCache, commit: str) -> list[LocalModel]:
    files = _snapshot_files(cache, commit)
    entries = [RepoFile(rel, _size(p)) for rel, p in files.items()]
    models = []
    for choice in gguf_models(entries):
        paths = tuple(files[f.path] for f in choice.files)
        projector = projector_for(entries, choice)
        model = _model(cache, commit, choice.quant, "gguf", paths[0], paths, choice.layout)
        if projector is not None:
            # The pair is what `run` loads and `rm` deletes, so its size is the pair's.
            model = replace(model, projector=files[projector.path], size=model.size + _size(files[projector.path]))
        models.append(model)
    top = [rel for rel in files if "/" not in rel]
    fmt: Format | None = (
        SAFETENSORS
        if any(rel.endswith(".safetensors") for rel in files)
        else PICKLE
        if "config.json" in files and any(rel.endswith(PICKLE_WEIGHTS) for rel in top)
        else None
    )
    if fmt is not None:
        paths = tuple(files.values())
        models.append(
            _model(cache, commit, _safetensors_quant(cache, files), fmt, cache.snapshot(commit), paths, "folder")
        )
    return models


def _model(
    cache: RepoCache, commit: str, quant: str, fmt: Format, path: Path, files: tuple[Path, ...], layout: str
) -> LocalModel:
    blobs = {os.path.realpath(p): p for p in files}
    size = sum(_size(p) for p in blobs.values())
    modified = max((_mtime(Path(b)) for b in blobs), default=0.0)
    return LocalModel(
        name=display_name(cache.repo, quant, fmt),
        repo=cache.repo,
        quant=quant,
        format=fmt,
        size=size,
        modified=modified,
        path=path,
        files=files,
        commit=commit,
        layout=layout,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def display_name(repo: str, quant: str, fmt: str) -> str:
    entry = catalog_module.load().by_repo(repo)
    if fmt == "gguf":
        base = entry.name if entry is not None and entry.format == "gguf" else repo
        return f"{base}:{quant}"
    return repo


def _safetensors_quant(cache: RepoCache, files: dict[str, Path]) -> str:
    entry = catalog_module.load().by_repo(cache.repo)
    if entry is not None:
        return entry.default_quant
    try:
        config = json.loads(files["config.json"].read_text())
    except (KeyError, OSError, ValueError):
        return "unknown"
    method = (config.get("quantization_config") or {}).get("quant_method")
    return str(method or config.get("torch_dtype") or "unknown").lower()


def install(
    cache: RepoCache,
    commit: str,
    choice: GGUFChoice,
    blobs: list[Path],
    *,
    projector: tuple[RepoFile, Path] | None = None,
) -> None:
    """Make a downloaded, verified model (and its projector) visible: snapshot links, then refs/main.
    The projector is linked first, so no listing sees the weights of a VL pull without it."""
    if projector is not None:
        cache.link(commit, projector[0].path, projector[1])
    if choice.layout == "byte-split":
        cache.link(commit, choice.entry_path, blobs[0])
    else:
        for file, blob in zip(choice.files, blobs):
            cache.link(commit, file.path, blob)
    cache.write_ref(commit)


def remove(model: LocalModel, cache_dir: Path | None = None) -> int:
    """Delete exactly this model's files; a blob another snapshot file still uses stays.
    Returns the bytes freed."""
    cache = RepoCache(cache_dir or hub_cache(), model.repo)
    targets = [p for p in model.files if p.is_symlink() or p.is_file()]
    if model.projector is not None and not _shared_projector(cache, model):
        targets.append(model.projector)
    for path in targets:
        if not cache.contains(path):
            raise UsageError(f"refusing to delete {path}: it is outside {cache.folder}")
    blobs = {_link_target(p) for p in targets}
    for path in targets:
        path.unlink()
    still_used = referenced_blobs(cache)
    freed = 0
    for blob in blobs - still_used:
        if blob is not None and cache.contains(blob) and blob.is_file() and blob.parent == cache.blobs:
            freed += _size(blob)
            blob.unlink()
    _prune(cache)
    return freed


def _shared_projector(cache: RepoCache, model: LocalModel) -> bool:
    """Another quant in the same snapshot goes with the same projector: it stays for that one."""
    return any(
        other.projector == model.projector and other.path != model.path
        for other in _snapshot_models(cache, model.commit)
    )


def referenced_blobs(cache: RepoCache) -> set[Path | None]:
    """Every blob some snapshot file of this repo points at."""
    return {_link_target(p) for commit in _commits(cache) for p in _snapshot_files(cache, commit).values()}


def _link_target(path: Path) -> Path | None:
    if path.is_symlink():
        return Path(os.path.abspath(path.parent / os.readlink(path)))
    return Path(os.path.abspath(path))


def _prune(cache: RepoCache) -> None:
    """Remove emptied snapshot folders and their refs; the whole repo folder once nothing is left."""
    for commit in [p.name for p in cache.snapshots.iterdir() if p.is_dir()]:
        snapshot = cache.snapshots / commit
        for folder, dirs, names in sorted(os.walk(snapshot), key=lambda t: -len(t[0])):
            if not dirs and not names and Path(folder) != snapshot:
                os.rmdir(folder)
        if not any(snapshot.iterdir()):
            snapshot.rmdir()
    refs = cache.folder / "refs"
    if refs.is_dir():
        for ref in [p for p in refs.rglob("*") if p.is_file()]:
            if not (cache.snapshots / ref.read_text().strip()).is_dir():
                ref.unlink()
    # The repo folder goes once nothing is left in it; a partial download (maybe running) keeps it.
    if not any(cache.snapshots.iterdir()) and not (cache.blobs.is_dir() and any(cache.blobs.iterdir())):
        shutil.rmtree(cache.folder)


def matching(name: str, cache_dir: Path | None = None) -> list[LocalModel]:
    """The installed models `name` designates, for `rm`: one quant, or the only one there is."""
    from ..errors import ModelNotFound
    from .names import parse

    ref = parse(name)
    if ref.kind == "path" or ref.repo is None:
        raise UsageError(f"{name!r} is a path; qwen rm deletes downloaded models (see qwen list)")
    repos = [e.repo for e in gguf_sources(ref)] or [ref.repo]
    models = [m for repo in repos for m in repo_models(RepoCache(cache_dir or hub_cache(), repo))]
    if ref.kind == "catalog" and ref.entry is not None and ref.entry.format == "gguf":
        models = [m for m in models if m.format == "gguf"]
    if ref.quant:
        models = [m for m in models if m.quant == ref.quant]
    if not models:
        raise ModelNotFound(f"{ref.display} is not downloaded", "qwen list shows the models you have")
    if len(models) > 1:
        names = ", ".join(m.name for m in models)
        raise UsageError(
            f"{name} matches {len(models)} downloaded models: {names}", f"name one: qwen rm {models[0].name}"
        )
    return models
