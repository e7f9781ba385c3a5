"""The text side of a transformers model, as the torch backend uses it: the chat template,
tokenizing a prompt, each token's bytes (decoded once, like llama.cpp's pieces) and which tokens
end a turn. The torch twin of `llama_vocab`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..formats import hf_folder
from ..templates import ChatTemplate
from .local import END_OF_TURN_TEXTS


class TorchVocab:
    def __init__(self, tokenizer: Any, folder: Path, config: dict[str, Any]):
        self.tokenizer = tokenizer
        tok_config = hf_folder.tokenizer_config(folder)
        bos = hf_folder.special_token_text(tok_config.get("bos_token")) or (tokenizer.bos_token or "")
        eos = hf_folder.special_token_text(tok_config.get("eos_token")) or (tokenizer.eos_token or "")
        self.template = ChatTemplate(hf_folder.chat_template_source(folder, tok_config), bos_token=bos, eos_token=eos)
        ids = hf_folder.end_token_ids(folder, config)
        vocab = tokenizer.get_vocab()
        ids |= {vocab[text] for text in END_OF_TURN_TEXTS if text in vocab}
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        self.end_tokens = frozenset(ids)
        self._special = set(tokenizer.all_special_ids)
        backend_tokenizer = getattr(tokenizer, "backend_tokenizer", None)  # only fast tokenizers have one
        self._byte_level = type(backend_tokenizer and backend_tokenizer.decoder).__name__ == "ByteLevel"
        self._pieces: dict[int, bytes] = {}

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (cached: called once a token)."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._token_bytes(token)
        return cached

    def _token_bytes(self, token: int) -> bytes:
        if token in self._special:
            return b""  # control tokens print nothing, as in llama.cpp
        text = self.tokenizer.convert_ids_to_tokens(token)
        if text is None:
            return b""
        added = self.tokenizer.added_tokens_decoder.get(token)
        if added is not None:
            return added.content.encode("utf-8")
        if self._byte_level:
            table = _byte_decoder()
            if all(c in table for c in text):
                return bytes(table[c] for c in text)
        return self.tokenizer.decode([token]).encode("utf-8")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the character a token uses → the byte it stands for."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}
