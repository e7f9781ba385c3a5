"""The Hugging Face cache layout, which qwencli shares with every other HF tool:

    $HF_HUB_CACHE/models--Qwen--Qwen2.5-7B-Instruct-GGUF/
        blobs/<etag>                 file contents, named by sha256 (LFS) or git sha1
        blobs/<etag>.incomplete      a partial download (scan_cache_dir reports these)
        snapshots/<commit>/<path>    relative symlinks into blobs/
        refs/main                    the commit `main` pointed to

Everything built from names that came over the network (repo ids, commit ids, etags, file paths)
goes through the checks here, and every path is confirmed to stay inside the repo's folder.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DownloadError
from .names import valid_repo_id

ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
COMMIT = re.compile(r"[0-9a-f]{40}")
INCOMPLETE = ".incomplete"


def hub_cache() -> Path:
    """Where huggingface_hub keeps repos, read at call time with its precedence
    (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser().absolute()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(home).expanduser().absolute() / "hub"


def repo_folder_name(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


def repo_from_folder(name: str) -> str | None:
    if not name.startswith("models--"):
        return None
    repo = name[len("models--") :].replace("--", "/")
    return repo if valid_repo_id(repo) else None


def safe_relpath(path: str) -> PurePosixPath:
    """A repo file path that is safe to create under a snapshot folder (no '..', no absolute path)."""
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or len(path) > 1024
    ):
        raise DownloadError(
            f"the hub listed an unsafe file name {path!r}; refusing to write it",
            "this repo is not usable; report it to its owner",
        )
    return pure


@dataclass(frozen=True)
class RepoCache:
    root: Path  # the hub cache
    repo: str

    def __post_init__(self) -> None:
        if not valid_repo_id(self.repo):
            raise DownloadError(f"not a repo id: {self.repo!r}")

    @property
    def folder(self) -> Path:
        return self.root / repo_folder_name(self.repo)

    @property
    def blobs(self) -> Path:
        return self.folder / "blobs"

    @property
    def snapshots(self) -> Path:
        return self.folder / "snapshots"

    @property
    def lock_dir(self) -> Path:
        # The same lock files huggingface_hub takes, so its downloads and ours wait for each other.
        return self.root / ".locks" / repo_folder_name(self.repo)

    def blob(self, etag: str) -> Path:
        if not ETAG.fullmatch(etag):
            raise DownloadError(f"the hub gave a malformed checksum {etag[:80]!r} for a file of {self.repo}")
        return self.blobs / etag

    def partial(self, etag: str) -> Path:
        return self.blob(etag).with_name(etag + INCOMPLETE)

    def lock(self, etag: str) -> Path:
        self.blob(etag)
        return self.lock_dir / f"{etag}.lock"

    @contextlib.contextmanager
    def locked(self, key: str, on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold the lock file `key` across processes; `on_wait` runs if someone else holds it."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock(key)), mode=0o664)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            on_wait()
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def snapshot(self, commit: str) -> Path:
        if not COMMIT.fullmatch(commit):
            raise DownloadError(f"the hub gave a malformed commit id {commit[:80]!r} for {self.repo}")
        return self.snapshots / commit

    def pointer(self, commit: str, path: str) -> Path:
        snapshot = self.snapshot(commit)
        pointer = snapshot.joinpath(*safe_relpath(path).parts)
        if not _inside(pointer, snapshot):
            raise DownloadError(f"{path!r} would leave the snapshot folder; refusing to write it")
        return pointer

    def prepare(self) -> None:
        """Create blobs/ and snapshots/ so the folder is a valid cache repo while a pull runs."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.lock_dir.mkdir(parents=True, exist_ok=True)

    def link(self, commit: str, path: str, blob: Path) -> Path:
        """Point snapshots/<commit>/<path> at `blob` (a relative symlink, as huggingface_hub makes)."""
        pointer = self.pointer(commit, path)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            if pointer.resolve() == blob.resolve():
                return pointer
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        except OSError:
            os.link(blob, tmp)  # file systems without symlinks: a hard link still shares the bytes
        os.replace(tmp, pointer)
        return pointer

    def read_ref(self, ref: str = "main") -> str | None:
        try:
            commit = (self.folder / "refs" / ref).read_text().strip()
        except OSError:
            return None
        return commit if COMMIT.fullmatch(commit) else None

    def write_ref(self, commit: str, ref: str = "main") -> None:
        self.snapshot(commit)
        path = self.folder / "refs" / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{ref}.{os.getpid()}.tmp")
        tmp.write_text(commit)
        os.replace(tmp, path)

    def contains(self, path: Path) -> bool:
        return _inside(path, self.folder)


def _inside(path: Path, folder: Path) -> bool:
    try:
        resolved = Path(os.path.abspath(path))
        return resolved.is_relative_to(Path(os.path.abspath(folder)))
    except (OSError, ValueError):
        return False
