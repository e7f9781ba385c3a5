"""Models behind an OpenAI-compatible API: hosted Qwen (Alibaba Cloud Model Studio, "DashScope")
and any server given with `--host` (a `qwen serve`, vLLM, llama-server, Ollama's /v1).

Resolving one is local: it checks the name, the URL and that a key is there, and builds the
`Endpoint` the remote backend talks to. The network is first touched when the backend loads.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from ..errors import AuthenticationError, UsageError
from ..resolved import HOST_KEY, Endpoint, ResolvedModel

DASHSCOPE_MAINLAND = "https://dashscope.aliyuncs.com/compatible-mode/v1"
DASHSCOPE_KEY = "DASHSCOPE_API_KEY"

#: Names Model Studio serves: `qwen-max`, `qwen-max-latest`, dated snapshots such as
#: `qwen-max-2025-01-25` or `qwen-max-0428`, and the 2025–2026 lines (`qwen3-max`, `qwen3.5-plus`,
#: `qwen3.6-plus`, `qwen3-coder-plus`, `qwen3.8-flash`, …). The service decides which still exist.
HOSTED = re.compile(
    r"(?P<tier>qwen-(max|plus|turbo)|qwen3-max|qwen3\.5-(plus|flash)|qwen3\.6-plus|qwen3-coder-(plus|next)"
    r"|qwen3\.8-flash)(-latest|-preview|-\d{4}(-\d{2}-\d{2})?)?"
)
#: Names people know a snapshot by.
ALIASES = {"qwen2.5-max": "qwen-max-2025-01-25"}
#: Context windows Model Studio documents (a hint for `/show`); a line not listed reports none.
CONTEXT = {
    "qwen-max": 32768,
    "qwen-plus": 131072,
    "qwen-turbo": 1000000,
    "qwen3-max": 262144,
    "qwen3-coder-plus": 1000000,
}


def is_hosted(name: str, *, local_names: frozenset[str] = frozenset()) -> bool:
    """A Model Studio name. `qwen3-coder-next` is hosted and open: where `local_names` holds it,
    the open weights win and the hosted one is reached with `--backend remote`."""
    lowered = name.lower()
    if lowered in local_names:
        return False
    return lowered in ALIASES or bool(HOSTED.fullmatch(lowered))


def runs_hosted(name: str) -> bool:
    """Whether `name` alone (no --backend remote) means the hosted model: the catalog is read only
    for a name that looks hosted, so a local path or an open model's name never pays for it."""
    if not is_hosted(name):
        return False
    from .catalog import load

    return is_hosted(name, local_names=frozenset(load().names))


def resolve(
    name: str, *, host: str | None = None, api_key: str | None = None, base_url: str | None = None
) -> ResolvedModel:
    from .. import settings

    config = settings.load()
    if not name or not name.strip() or any(ord(c) < 32 for c in name):
        raise UsageError("no model name given", "e.g. qwen run qwen-max, or qwen list --host URL")
    if host is not None:
        endpoint = host_endpoint(host, api_key, model=name.strip())
        reason = f"--host {endpoint.base_url}"
        return ResolvedModel(name=endpoint.model, format="remote", endpoint=endpoint, reason=reason)
    if not is_hosted(name):  # here (--backend remote) a name that is also open weights is the hosted one
        raise UsageError(
            f"--backend remote needs a server for {name!r}",
            "give --host URL (or QWEN_HOST), or a hosted name: qwen3-max, qwen3.5-plus, qwen3.6-plus, qwen-plus, …",
        )
    model = ALIASES.get(name.lower(), name.lower())
    key = config.dashscope_api_key
    if not key:
        raise AuthenticationError(
            f"{name} is hosted by Alibaba Cloud Model Studio and needs an API key in {DASHSCOPE_KEY}",
            f"export {DASHSCOPE_KEY}=sk-… (a key from the Model Studio console; mainland-China keys also need"
            f" --base-url {DASHSCOPE_MAINLAND})",
        )
    url = normalize_url(base_url or config.dashscope_base_url, flag="--base-url")
    endpoint = Endpoint(base_url=url, model=model, provider="dashscope", api_key=key, key_source=DASHSCOPE_KEY)
    tier = HOSTED.fullmatch(model)
    hints = {"context": CONTEXT.get(tier.group("tier")) if tier else None, "family": "qwen-hosted"}
    return ResolvedModel(
        name=name, format="remote", endpoint=endpoint, hints=hints, reason=f"{name} is hosted: Model Studio at {url}"
    )


def host_endpoint(host: str, api_key: str | None, *, model: str = "") -> Endpoint:
    """An OpenAI-compatible server given with --host; the key from --api-key, else QWEN_API_KEY."""
    from .. import settings

    return Endpoint(
        base_url=normalize_url(host, flag="--host"),
        model=model,
        provider="openai",
        api_key=api_key or settings.load().api_key,
        key_source=f"--api-key or {HOST_KEY}",
    )


def normalize_url(text: str, *, flag: str) -> str:
    """`host:port`, `http://host:port` or a full base URL → a base URL ending where `/chat/completions`
    goes. A bare server address gets `/v1`, as every OpenAI-compatible server mounts it there."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {text!r} is not an http(s) URL", "e.g. http://127.0.0.1:7936 or https://host/v1")
    if parts.username or parts.password:
        raise UsageError(f"{flag} must not carry credentials in the URL", "pass the key with --api-key")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise UsageError(f"{flag} {text!r} has an invalid port") from None
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
