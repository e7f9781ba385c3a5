"""A Hugging Face model folder (config.json + weights), read without loading an engine: the
safety and kernel checks before a load, its recommended sampling and its chat template.

The twin of the GGUF header reader. Safety: only `*.safetensors` weights load and never a
folder's own Python code, unless the user says otherwise with `--allow-pickle` (pickle weights,
when there are no safetensors) or `--trust-remote-code` (a folder whose config maps to its own
classes).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..chat import GenerationOptions
from ..errors import BackendUnavailable, InvalidModelFile, UnsupportedModel

#: Pickle weight files transformers loads, which `pull --backend torch --allow-pickle` fetches and
#: a load refuses without it. Not `.ckpt`: in a transformers repo that is a TensorFlow checkpoint,
#: which we never load (no `from_tf`), so a folder with only that has no weights for us at all.
PICKLE_WEIGHTS = (".bin", ".pt", ".pth")

#: quant_method → the packages transformers needs for it, and the install command.
QUANT_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "awq": (("gptqmodel", "accelerate"), "pip install gptqmodel accelerate"),
    "gptq": (("gptqmodel", "optimum"), "pip install gptqmodel optimum"),
    "fp8": (("accelerate",), "pip install accelerate"),
}


def check_folder(folder: Path, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> dict[str, Any]:
    """The folder's config.json, after the safety and kernel checks; raise a QwenError otherwise."""
    config_path = folder / "config.json"
    if not folder.is_dir() or not config_path.is_file():
        raise InvalidModelFile(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"{config_path} is not valid JSON: {exc}") from None
    if not has_safetensors(folder):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_WEIGHTS)
        if not pickles:
            raise InvalidModelFile(f"{folder.name} has no *.safetensors weights")
        if not allow_pickle:
            raise InvalidModelFile(
                f"{folder.name} has only pickle weights ({pickles[0]}); qwencli refuses them by default: "
                "loading a pickle can run arbitrary code",
                "use the repo's safetensors version, or --allow-pickle if you trust where the file came from",
            )
    if config.get("auto_map") and not _known_model_type(config.get("model_type")) and not trust_remote_code:
        raise UnsupportedModel(
            f"{folder.name} needs its own Python code (trust_remote_code), which qwencli does not run by default",
            "read the folder's *.py files and pass --trust-remote-code if you trust them; "
            "or run its GGUF build with --backend llama",
        )
    method = str((config.get("quantization_config") or {}).get("quant_method") or "").lower()
    if method:
        packages, command = QUANT_PACKAGES.get(method, ((), ""))
        missing = [p for p in packages if find_spec(p) is None]
        if missing:
            raise BackendUnavailable(
                f"{folder.name} is {method.upper()}-quantized and its kernels need {', '.join(missing)}",
                f"{command} (or run the GGUF build: --backend llama)",
            )
    return config


def has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


def has_vision_tower(folder: Path, config: dict[str, Any] | None = None) -> bool:
    """A vision-language folder (Qwen-VL, Qwen3.5+): a vision config, and the image processor's
    settings beside it (what the torch backend needs to read images)."""
    config = _json(folder / "config.json") if config is None else config
    return "vision_config" in config and (folder / "preprocessor_config.json").is_file()


def _known_model_type(model_type: Any) -> bool:
    from transformers import CONFIG_MAPPING  # a table of names: no engine is loaded

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def generation_defaults(folder: Path) -> GenerationOptions:
    """The sampling settings the repo's generation_config.json recommends."""
    data = _json(folder / "generation_config.json")

    def number(key: str) -> float | None:
        value = data.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    temperature = number("temperature")
    if data.get("do_sample") is False:
        temperature = 0.0
    top_k = number("top_k")
    return GenerationOptions(
        temperature=temperature,
        top_p=number("top_p"),
        top_k=int(top_k) if top_k is not None else None,
        repeat_penalty=number("repetition_penalty"),
    )


def end_token_ids(folder: Path, config: dict[str, Any]) -> set[int]:
    """The end-of-sequence ids config.json and generation_config.json name."""
    generation_config = _json(folder / "generation_config.json")
    return _token_ids(config.get("eos_token_id")) | _token_ids(generation_config.get("eos_token_id"))


def tokenizer_config(folder: Path) -> dict[str, Any]:
    return _json(folder / "tokenizer_config.json")


def special_token_text(value: Any) -> str:
    """A tokenizer_config.json special token (`"<s>"` or `{"content": "<s>", …}`) as text."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def chat_template_source(folder: Path, tok_config: dict[str, Any]) -> str | None:
    """The chat template a repo ships: chat_template.jinja (newer repos), tokenizer_config.json's,
    or chat_template.json's (where processor repos such as Qwen3-VL keep it)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template") or _json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def trained_context(config: dict[str, Any]) -> int | None:
    trained = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return trained if isinstance(trained, int) and trained > 0 else None


def _json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_ids(value: Any) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()
