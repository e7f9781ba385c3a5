"""The tokenizer of a loaded llama.cpp model for clients (`/tokenize`, `/detokenize`,
`/tokenizer_info`), shared by both llama.cpp backends: each call runs on the engine thread, as
every call into llama.cpp does, between two tokens of a reply rather than after it (it only
reads the vocabulary)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..formats.gguf import GGUFModel
from .base import ModelInfo
from .engine_thread import EngineThread
from .llama_vocab import LlamaVocab


class EngineTokenizer:
    """Mixed into a llama.cpp backend, which sets these fields when it loads."""

    _engine: EngineThread
    _vocab: LlamaVocab
    model: GGUFModel
    info: ModelInfo

    def tokenize_text(self, text: str, *, add_special: bool) -> list[int]:
        return self._engine.call_between(lambda: self._vocab.tokenize_text(text, add_special=add_special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._engine.call_between(self._vocab.detokenize, tokens)

    def token_pieces(self, tokens: Sequence[int]) -> list[bytes]:
        return self._engine.call_between(lambda: [self._vocab.piece(t) for t in tokens])

    def tokenizer_info(self) -> dict[str, Any]:
        metadata = self.model.metadata

        def texts() -> dict[str, Any]:
            vocab = self._vocab
            return {
                "bos_token": vocab.token_text(metadata.get("tokenizer.ggml.bos_token_id")),
                "eos_token": vocab.token_text(metadata.get("tokenizer.ggml.eos_token_id")),
                "pad_token": vocab.token_text(metadata.get("tokenizer.ggml.padding_token_id")),
                "unk_token": vocab.token_text(metadata.get("tokenizer.ggml.unknown_token_id")),
                "vocab_size": vocab.size,
            }

        return {
            **self._engine.call_between(texts),
            "add_bos_token": bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
            "chat_template": self.model.chat_template,
            "model_max_length": self.info.context_length,
            "tokenizer_class": f"llama.cpp ({metadata.get('tokenizer.ggml.model', 'unknown')})",
        }
