"""Talking to the Hugging Face hub through huggingface_hub: the repo listing, and its errors as ours.

Settings are read at call time (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE); huggingface_hub reads some
of them once at import, which is too early for a long-lived server or for tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import DownloadError, ModelNotFound, NetworkError, QwenError, UsageError
from .select import RepoFile

DEFAULT_ENDPOINT = "https://huggingface.co"
COMMIT = re.compile(r"[0-9a-f]{40}")
TOKEN_HINT = "export HF_TOKEN=hf_… (a token from huggingface.co/settings/tokens)"


@dataclass(frozen=True)
class Listing:
    """A repo at one commit: its files with sizes and LFS sha256, and what the card says."""

    repo: str
    commit: str
    files: tuple[RepoFile, ...]
    license: str | None = None
    gated: bool = False


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def token() -> str | None:
    """HF_TOKEN, else the token `hf auth login` saved. Never printed."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def check_online(what: str) -> None:
    if offline():
        raise NetworkError(
            f"{what} needs the hub, and HF_HUB_OFFLINE=1 forbids the network",
            "unset HF_HUB_OFFLINE to download; qwen list shows the models you already have",
        )


def fetch_listing(repo: str, *, revision: str | None = None, attempts: int = 3) -> Listing:
    """The repo's files at its current commit (one `model_info(files_metadata=True)` call)."""
    from huggingface_hub import HfApi

    check_online(f"pulling {repo}")
    api = HfApi(endpoint=endpoint(), token=token() or False)
    for attempt in range(attempts):
        try:
            with hub_errors(repo):
                info = api.model_info(repo, revision=revision, files_metadata=True, timeout=30)
            break
        except NetworkError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)  # the hub's 5xx are usually brief
    commit = info.sha or ""
    if not COMMIT.fullmatch(commit):
        raise DownloadError(
            f"the hub gave {repo} a malformed commit id", "check HF_ENDPOINT points at a Hugging Face hub"
        )
    files = tuple(
        RepoFile(
            path=s.rfilename,
            size=int((s.lfs.size if s.lfs else s.size) or 0),
            sha256=(s.lfs.sha256.lower() if s.lfs and s.lfs.sha256 else None),
            blob_id=s.blob_id,
        )
        for s in info.siblings or ()
    )
    card = info.card_data
    license_ = getattr(card, "license", None) if card is not None else None
    return Listing(repo=repo, commit=commit, files=files, license=license_, gated=bool(info.gated))


@contextlib.contextmanager
def hub_errors(repo: str, filename: str | None = None) -> Iterator[None]:
    """Run a hub call; its exceptions come out as QwenErrors with a next step."""
    try:
        yield
    except QwenError:
        raise
    except Exception as exc:
        mapped = translate(exc, repo, filename)
        if mapped is None:
            raise
        raise mapped from None


def translate(exc: Exception, repo: str, filename: str | None = None) -> QwenError | None:
    """huggingface_hub's and httpx's exceptions → a QwenError (None: not a hub error). Never echoes
    headers, so the token cannot leak into a message."""
    import httpx2
    from huggingface_hub import errors as hf

    what = f"{repo}/{filename}" if filename else repo
    if isinstance(exc, hf.GatedRepoError):
        return NetworkError(f"{repo} is gated: accept its terms on huggingface.co/{repo}, then use a token", TOKEN_HINT)
    if isinstance(exc, hf.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        if status == 401:
            return ModelNotFound(
                f"{repo} was not found on the hub, or it is private",
                f"check the name; for a private repo, {TOKEN_HINT}",
            )
        return ModelNotFound(f"{repo} was not found on the hub", "check the name (hub repo ids are owner/name)")
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelNotFound(f"{repo} has no such revision")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return DownloadError(
            f"{what} is listed but the hub says it does not exist",
            "the repo changed while pulling; run the same qwen pull again",
        )
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return NetworkError(
            f"pulling {repo} needs the hub, and HF_HUB_OFFLINE=1 forbids the network",
            "unset HF_HUB_OFFLINE to download; qwen list shows the models you already have",
        )
    if isinstance(exc, hf.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            return NetworkError(f"the hub refused access to {what} ({status})", TOKEN_HINT)
        if status == 429:
            return NetworkError("the hub is rate-limiting requests (429)", "wait a minute and run it again")
        return NetworkError(
            f"the hub answered {status or 'an error'} for {what}",
            "the hub may be having trouble; run it again later (finished files are kept)",
        )
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return NetworkError(
            f"cannot reach the hub at {endpoint()} ({_reason(exc)})",
            "check the network or HF_ENDPOINT; HF_HUB_OFFLINE=1 runs only downloaded models",
        )
    if isinstance(exc, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
        return NetworkError(
            f"the connection to the hub failed while fetching {what} ({_reason(exc)})",
            "run the same command again; the download resumes where it stopped",
        )
    if isinstance(exc, httpx2.UnsupportedProtocol):
        return UsageError(f"HF_ENDPOINT={endpoint()} is not an http(s) URL")
    return None


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
