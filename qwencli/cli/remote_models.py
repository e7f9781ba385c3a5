"""`qwen list --host URL`: the models an OpenAI-compatible server serves (its `/v1/models`)."""

from __future__ import annotations

import json
import sys


def list_remote(*, host: str, api_key: str | None, json_output: bool) -> None:
    from ..backends.openai_client import OpenAIClient
    from ..console import counted, table
    from ..errors import RemoteError
    from ..models.hosted import host_endpoint

    endpoint = host_endpoint(host, api_key)
    client = OpenAIClient(endpoint)
    try:
        models = client.models()
    finally:
        client.close()
    if models is None:
        raise RemoteError(f"{endpoint.base_url} has no /models endpoint", "is it an OpenAI-compatible server?")
    if json_output:
        sys.stdout.write(json.dumps(models, indent=2) + "\n")
        return
    rows = [("NAME", "OWNED BY")] + [(str(m.get("id", "")), str(m.get("owned_by", ""))) for m in models]
    sys.stdout.write(table(rows) + f"{counted(len(models), 'model')} at {endpoint.base_url}\n")
