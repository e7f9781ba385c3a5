"""The text side of a loaded llama.cpp model, shared by both llama.cpp backends: its chat
template, tokenizing a prompt, each token's bytes, and which tokens end a turn.

Over llama.cpp's public C API (`llama_model_p` → `llama_vocab_p`), so neither backend depends on
how the other holds its model. Every call goes into llama.cpp: make them on the engine thread.
A vocabulary lives as long as the model it was made from (a reload makes a new one).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..formats.gguf import GGUFModel
from ..templates import ChatTemplate
from .local import END_OF_TURN_TEXTS


class LlamaVocab:
    def __init__(self, model: Any, gguf: GGUFModel):
        """`model`: a `llama_model_p`; `gguf`: the file's header (template, BOS/EOS ids)."""
        import llama_cpp

        self._lib = llama_cpp
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.size = llama_cpp.llama_vocab_n_tokens(self.vocab)
        metadata = gguf.metadata
        bos = self._token_text(metadata.get("tokenizer.ggml.bos_token_id"))
        eos = self._token_text(metadata.get("tokenizer.ggml.eos_token_id"))
        self.template = ChatTemplate(gguf.chat_template, bos_token=bos, eos_token=eos)
        self._add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
        self._bos_text = bos
        self._pieces: dict[int, bytes] = {}
        end_tokens = self._end_of_turn_tokens()
        vocab, is_eog = self.vocab, llama_cpp.llama_vocab_is_eog
        ends: dict[int, bool] = {}  # llama.cpp's answer per token seen: a ctypes call costs more than the lookup

        def is_end(token: int) -> bool:
            end = ends.get(token)
            if end is None:
                end = ends[token] = token in end_tokens or bool(is_eog(vocab, token))
            return end

        #: Whether a token ends the turn: called once a token.
        self.is_end: Callable[[int], bool] = is_end

    def tokenize(self, text: str) -> list[int]:
        """A prompt's tokens, special tokens parsed, BOS added when the model wants one and the
        rendered template did not already write it."""
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self._tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def text_tokens(self, text: str) -> list[int]:
        """Tokens of a text inside a reply (special tokens parsed, no BOS), e.g. a forced `</think>`."""
        return self._tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def prompt_tokens(self, prompt: str | Sequence[int]) -> list[int]:
        """A prompt given as text (tokenized) or as token ids (checked: an id outside the
        vocabulary would make llama.cpp read out of bounds)."""
        if isinstance(prompt, str):
            return self.tokenize(prompt)
        tokens = list(prompt)
        if not tokens:
            raise UsageError("prompt: no tokens", param="prompt")
        for token in tokens:
            if not 0 <= token < self.size:
                raise UsageError(
                    f"prompt: token {token} is not in the vocabulary (0 to {self.size - 1})", param="prompt"
                )
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of `tokens`, special tokens written out (what `/detokenize` answers)."""
        out = []
        for token in tokens:
            if not 0 <= token < self.size:
                raise UsageError(f"tokens: {token} is not in the vocabulary (0 to {self.size - 1})", param="tokens")
            out.append(self.special_piece(token))
        return b"".join(out).decode("utf-8", errors="replace")

    def tokenize_text(self, text: str, *, add_special: bool) -> list[int]:
        """`text`'s tokens as a client asks for them (`/tokenize`): special-token text parsed to
        its id, BOS only if asked and the model wants one."""
        return self._tokenize(text.encode("utf-8"), add_bos=add_special and self._add_bos, special=True)

    def token_text(self, token: Any) -> str | None:
        """The vocabulary's text of a special token id from the header (None when there is none)."""
        if not isinstance(token, int) or not 0 <= token < self.size:
            return None
        return self._token_text(token) or None

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (cached: called once a token); a special token's are
        empty, as a reply never shows them."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._to_piece(token, special=False)
        return cached

    def special_piece(self, token: int) -> bytes:
        """A token's bytes with special tokens written out (`<|im_start|>`): an echoed prompt's."""
        return self._to_piece(token, special=True)

    def _to_piece(self, token: int, *, special: bool) -> bytes:
        lib = self._lib
        buf = ctypes.create_string_buffer(256)
        n = lib.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def _tokenize(self, text: bytes, *, add_bos: bool, special: bool) -> list[int]:
        lib = self._lib
        room = len(text) + 2  # a token covers at least a byte; plus BOS
        tokens = (lib.llama_token * room)()
        n = lib.llama_tokenize(self.vocab, text, len(text), tokens, room, add_bos, special)
        if n < 0:
            room = -n
            tokens = (lib.llama_token * room)()
            n = lib.llama_tokenize(self.vocab, text, len(text), tokens, room, add_bos, special)
            if n < 0:
                raise RuntimeError(f"llama.cpp could not tokenize the prompt ({n})")
        return list(tokens[:n])

    def _token_text(self, token: Any) -> str:
        if not isinstance(token, int) or token < 0:
            return ""
        return self._lib.llama_vocab_get_text(self.vocab, token).decode("utf-8")

    def _end_of_turn_tokens(self) -> frozenset[int]:
        ids = set()
        for text in END_OF_TURN_TEXTS:
            tokens = self._tokenize(text.encode(), add_bos=False, special=True)
            if len(tokens) == 1:
                ids.add(tokens[0])
        eos = self._lib.llama_vocab_eos(self.vocab)
        if eos >= 0:
            ids.add(eos)
        return frozenset(ids)
