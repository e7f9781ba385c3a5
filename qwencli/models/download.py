"""One repo file → one verified blob in the HF cache, resumable across processes.

Built on huggingface_hub (`get_hf_file_metadata` for the HEAD, `http_get` for the transfer with its
Range handling and in-process retries) because two things it does not do are needed here:

- resume across processes: hf_hub_download 2.x writes to a per-process temporary file and deletes it
  when a download fails, so Ctrl-C, kill -9 or a dropped connection lose everything. We keep the
  bytes in `blobs/<etag>.incomplete` (the name older huggingface_hub versions resumed from, under the
  same lock file) and continue with `Range` next time;
- verification: huggingface_hub checks only the size. We hash while writing and compare with the
  hub's sha256 (LFS) or git blob id before the blob gets its final name; a mismatch deletes the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from ..errors import DownloadError
from ..sizes import human_size
from . import hub
from .cache import RepoCache
from .progress import PullProgress
from .select import RepoFile

ATTEMPTS = 3


def expected_etag(file: RepoFile) -> str | None:
    """The blob name the hub will give this file: LFS sha256, else the git blob id."""
    return (file.sha256 or file.blob_id or "").lower() or None


def fetch(cache: RepoCache, commit: str, file: RepoFile, progress: PullProgress) -> Path:
    """Download `file` (at `commit`) into the cache's blobs, or find it there; return the blob path."""
    etag = expected_etag(file)
    if etag and cache.blob(etag).exists():
        return cache.blob(etag)
    meta = _head(cache.repo, commit, file)
    etag = (meta.etag or "").lower()
    if file.sha256 and etag != file.sha256:
        raise DownloadError(
            f"the hub's listing and its download disagree about {file.path} ({file.sha256[:12]}… vs {etag[:12]}…)",
            "the repo changed while pulling; run the same qwen pull again",
        )
    blob = cache.blob(etag)
    size = meta.size if meta.size is not None else file.size
    with cache.locked(etag, lambda: progress.note(f"waiting for another download of {file.path} to finish…")):
        if not blob.exists():  # else another process finished it while we waited
            _download(cache, etag, meta.location, size, file.path, progress)
    return blob


def _head(repo: str, commit: str, file: RepoFile):
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, file.path, revision=commit, endpoint=hub.endpoint())
    with hub.hub_errors(repo, file.path):
        return get_hf_file_metadata(url, token=hub.token() or False, timeout=30, endpoint=hub.endpoint())


def _download(cache: RepoCache, etag: str, url: str, size: int, name: str, progress: PullProgress) -> None:
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    partial = cache.partial(etag)
    headers = build_hf_headers(token=hub.token() or False)
    headers["Accept-Encoding"] = "identity"  # byte offsets must mean file offsets
    if _origin(url) != _origin(hub.endpoint()):
        headers.pop("authorization", None)  # a CDN gets a signed URL, never the token
    for attempt in range(ATTEMPTS):
        resume = partial.stat().st_size if partial.exists() else 0
        if resume > size:
            resume = 0
        bar = progress.bar(name, size, resume)
        try:
            with open(partial, "r+b" if partial.exists() else "w+b") as raw:
                raw.truncate(resume)
                with HashingWriter(raw, etag, resume) as writer, _small_chunks():
                    # huggingface_hub types these as a real file and a tqdm class; it only calls
                    # writer.write() and tqdm_class(**kwargs), which ours provide.
                    http_get(
                        url,
                        writer,  # type: ignore[arg-type]
                        resume_size=resume,
                        headers=headers,
                        expected_size=size,
                        displayed_filename=name,
                        tqdm_class=bar,  # type: ignore[arg-type]
                    )
                    digest = writer.hexdigest()
            break
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                kept = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"the disk is full while writing {name} ({human_size(kept)} of {human_size(size)} kept)",
                    f"free some space in {cache.root} (or set HF_HOME to a bigger disk) and run the same pull again",
                ) from None
            if attempt == ATTEMPTS - 1 or not _transient(exc):
                raise _interrupted(cache.repo, name, partial, size, exc) from None
        except Exception as exc:  # httpx and huggingface_hub errors
            if attempt == ATTEMPTS - 1 or not _transient(exc):
                raise _interrupted(cache.repo, name, partial, size, exc) from None
        time.sleep(0.5 * 2**attempt)
    if digest != etag:
        partial.unlink(missing_ok=True)
        kind = "sha256" if len(etag) == 64 else "git sha1"
        raise DownloadError(
            f"checksum mismatch for {name}: the hub says {kind} {etag[:16]}…, the download has {digest[:16]}…;"
            " the bad download was deleted",
            "run the same qwen pull again; if it keeps failing, a proxy or the mirror is corrupting the file",
        )
    os.chmod(partial, 0o644)
    os.replace(partial, cache.blob(etag))


@contextlib.contextmanager
def _small_chunks() -> Iterator[None]:
    """http_get re-chunks the body into DOWNLOAD_CHUNK_SIZE (10 MB) pieces through a BytesIO copy;
    1 MB pieces skip most of that copying (about 20 % of the time on loopback) and keep the bar
    smooth. http_get reads the constant at call time."""
    from huggingface_hub import constants

    saved = constants.DOWNLOAD_CHUNK_SIZE
    constants.DOWNLOAD_CHUNK_SIZE = min(saved, 1 << 20)
    try:
        yield
    finally:
        constants.DOWNLOAD_CHUNK_SIZE = saved


def _transient(exc: Exception) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status in (408, 429)
    # http_get raises a plain OSError for a body shorter than announced; keep the bytes and go on.
    return isinstance(exc, (httpx2.TransportError, OSError))


def _interrupted(repo: str, name: str, partial: Path, size: int, exc: Exception) -> Exception:
    kept = partial.stat().st_size if partial.exists() else 0
    resume = f"{human_size(kept)} of {human_size(size)} kept; run the same command again to resume"
    mapped = hub.translate(exc, repo, name)
    if mapped is not None:
        return type(mapped)(mapped.message, resume)
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return DownloadError(f"download of {name} failed: {reason}", resume)


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    return parsed.scheme, (parsed.hostname or "").lower(), parsed.port


class HashingWriter:
    """A file wrapper for http_get that hashes what is written, in order, on a second thread.

    hashlib releases the GIL, so hashing overlaps the network and the disk instead of adding to
    them. The hash covers the bytes already on disk (a resumed partial) plus everything written.
    When the server ignores `Range`, http_get seeks back and truncates; the hash is then rebuilt
    from disk. Git blob ids (40 hex) hash "blob <size>\\0" + content with sha1, as git does.
    """

    def __init__(self, raw: BinaryIO, etag: str, resume: int):
        self.raw = raw
        self.git = len(etag) == 40
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._rehash(resume)

    def _rehash(self, upto: int) -> None:
        self._drain()
        self.hash = hashlib.sha1() if self.git else hashlib.sha256()
        self._chunks: list[bytes] = []
        self.raw.flush()
        self.raw.seek(0)
        left = upto
        while left > 0:
            block = self.raw.read(min(left, 8 << 20))
            if not block:
                break
            self._consume(block)
            left -= len(block)
        self.raw.seek(upto)

    def _consume(self, data: bytes) -> None:
        if self.git:
            self._chunks.append(data)  # git's header needs the size first; these files are small
        else:
            self.hash.update(data)

    def _work(self) -> None:
        while (data := self._queue.get()) is not None:
            self._consume(data)

    def _drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def write(self, data: bytes) -> int:
        n = self.raw.write(data)
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, daemon=True, name="sha256")
            self._thread.start()
        self._queue.put(bytes(data))
        return n

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drain()

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.raw.seek(offset, whence)
        self._rehash(position)
        return position

    def truncate(self, size: int | None = None) -> int:
        return self.raw.truncate(size)

    def flush(self) -> None:
        self.raw.flush()

    def hexdigest(self) -> str:
        self._drain()
        if self.git:
            body = b"".join(self._chunks)
            return hashlib.sha1(b"blob %d\x00" % len(body) + body).hexdigest()
        return self.hash.hexdigest()
