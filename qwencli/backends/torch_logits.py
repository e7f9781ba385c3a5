"""A Hugging Face folder's logits over fixed-length chunks, on torch: the same definition as
`llama_logits.py` (each chunk read alone from an empty cache, its first token replaced by BOS when
the tokenizer adds one, logits kept only from position `first` on), `batch // ctx` chunks a forward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import InvalidModelFile
from ..formats import hf_folder
from .torch_device import pick_device, pick_dtype

if TYPE_CHECKING:
    import numpy as np


class TorchChunkLogits:
    def __init__(self, folder: Path, *, ctx: int, batch: int, threads: int, device: str | None = None):
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hf_folder.check_folder(folder)  # safetensors only, no repository code
        self.device = pick_device(device)
        self.ctx, self.n_seq = ctx, max(1, batch // ctx)
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        if self.device == "cpu":
            torch.set_num_threads(threads)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=pick_dtype(self.device, False), use_safetensors=True, local_files_only=True
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InvalidModelFile(f"transformers could not load {folder.name}: {str(exc).splitlines()[0]}") from None
        self._model.to(self.device)  # type: ignore[arg-type]
        self._model.eval()
        #: The logits' width (≥ the tokenizer's), as a GGUF's n_vocab is.
        self.vocab_size = int(self._model.get_output_embeddings().weight.shape[0])
        bos = self._tokenizer.bos_token_id
        probe = self._tokenizer("a", add_special_tokens=True).input_ids
        self.add_bos = bos is not None and probe[:1] == [bos]
        self.bos = int(bos) if bos is not None else -1

    def tokenize(self, text: bytes) -> list[int]:
        """The whole text; BOS (and nothing else) only where the tokenizer adds it."""
        ids = self._tokenizer(text.decode("utf-8", errors="replace"), add_special_tokens=False).input_ids
        return [self.bos, *ids] if self.add_bos else list(ids)

    def chunk_logits(self, chunks: Sequence[Sequence[int]], first: int) -> Iterator[np.ndarray]:
        if len(chunks) > self.n_seq or any(len(chunk) != self.ctx for chunk in chunks):
            raise ValueError(f"this load reads up to {self.n_seq} chunks of {self.ctx} tokens at a time")
        ids = torch.tensor([list(chunk) for chunk in chunks], dtype=torch.long)
        if self.add_bos:
            ids[:, 0] = self.bos
        with torch.inference_mode():
            out = self._model(input_ids=ids.to(self.device), use_cache=False, logits_to_keep=self.ctx - first)
        logits = out.logits.float().cpu().numpy()
        yield from logits

    def close(self) -> None:
        self._model = None  # type: ignore[assignment]
