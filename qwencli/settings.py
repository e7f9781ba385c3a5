"""Configuration from the environment, read at call time into one frozen object.

Every variable qwencli reads is in `VARIABLES` (and the README's table is generated from the same
list by `tests/test_settings.py`). Model weights live in the Hugging Face cache (`HF_HOME`,
`HF_HUB_CACHE`, read by huggingface_hub); qwencli's own directory holds only small files: input
history and the server's cache of model checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VARIABLES: dict[str, str] = {
    "QWEN_HOME": "qwencli's own small files: REPL history, the server's model-check cache"
    " (default: $XDG_DATA_HOME/qwencli or ~/.local/share/qwencli)",
    "QWEN_DEBUG": "1 shows full tracebacks for errors",
    "QWEN_BACKEND": "default for --backend: auto, llama, torch or remote",
    "QWEN_HOST": "an OpenAI-compatible server to use instead of local models (same as --host)",
    "QWEN_API_KEY": "API key for --host, and the key `qwen serve` requires",
    "DASHSCOPE_API_KEY": "key for hosted Qwen (qwen-max, qwen-plus, …)",
    "QWEN_DASHSCOPE_BASE_URL": "hosted Qwen endpoint (default: the international one)",
    "NO_COLOR": "any value turns colour off",
    "HF_HOME / HF_HUB_CACHE": "where models are stored (the standard Hugging Face cache)",
    "HF_ENDPOINT": "the Hugging Face hub to pull from",
    "HF_TOKEN": "token for gated or private repos (never printed)",
    "HF_HUB_OFFLINE": "1: never touch the network",
}

#: Alibaba Cloud Model Studio's OpenAI-compatible endpoint, international region.
DASHSCOPE_INTL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"

#: `qwen serve`'s port, and where `qwen ps` looks: "QWEN" on a phone keypad. Ollama has 11434,
#: LM Studio 1234, llama-server 8080, vLLM 8000.
DEFAULT_PORT = 7936


@dataclass(frozen=True)
class Settings:
    home: Path
    #: The commands take QWEN_BACKEND and QWEN_HOST through --backend's and --host's envvar=;
    #: these two are the same reading for code outside a command (and tests/test_settings.py).
    backend: str
    host: str | None
    api_key: str | None
    dashscope_api_key: str | None
    dashscope_base_url: str

    @property
    def history_file(self) -> Path:
        return self.home / "history"


def load() -> Settings:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Settings(
        home=Path(os.environ.get("QWEN_HOME") or Path(data_home) / "qwencli"),
        backend=os.environ.get("QWEN_BACKEND", "auto").strip().lower() or "auto",
        host=os.environ.get("QWEN_HOST") or None,
        api_key=os.environ.get("QWEN_API_KEY") or None,
        dashscope_api_key=os.environ.get("DASHSCOPE_API_KEY") or None,
        dashscope_base_url=os.environ.get("QWEN_DASHSCOPE_BASE_URL") or DASHSCOPE_INTL,
    )
