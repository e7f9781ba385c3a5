"""llama.cpp's `.kld` file: a reference model's log-probabilities, as `llama-perplexity
--kl-divergence-base` writes them and `--kl-divergence` reads them (tools/perplexity/perplexity.cpp),
so files from either side read on the other.

Layout, little-endian: `_logits_`, then int32 n_ctx, n_vocab, n_chunk, then the n_chunk × n_ctx
evaluated tokens (int32), then for each chunk its ctx − 1 − ctx/2 scored rows of
nv = 2·⌈n_vocab/2⌉ + 4 uint16: two float32 (scale, min_log_prob) and one uint16 per token,
log p ≈ scale·q + min_log_prob over the 16 nats below the top logit (0 = below that).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import UsageError
from .chunks import scored_per_chunk

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"_logits_"
_HEADER = struct.Struct("<iii")


def row_width(n_vocab: int) -> int:
    """uint16 per row: the two float32 in front and the vocabulary padded to an even count."""
    return 2 * ((n_vocab + 1) // 2) + 4


def file_size(ctx: int, n_vocab: int, n_chunk: int) -> int:
    return len(MAGIC) + _HEADER.size + 4 * n_chunk * ctx + 2 * n_chunk * scored_per_chunk(ctx) * row_width(n_vocab)


def encode(logits: np.ndarray) -> np.ndarray:
    """Rows of float32 logits → the file's uint16 rows, with llama.cpp's float32 arithmetic."""
    import numpy as np

    n, vocab = logits.shape
    f32 = np.float32
    top = logits.max(axis=1)
    low = np.maximum(logits.min(axis=1), top - f32(16))
    log_sum_exp = np.log(np.exp(logits - top[:, None]).sum(axis=1, dtype=np.float64)).astype(f32)
    min_log_prob = low - top - log_sum_exp
    scale = (top - low) / f32(65535)
    out = np.zeros((n, row_width(vocab)), dtype=np.uint16)
    out[:, :4] = np.stack([scale, min_log_prob], axis=1).astype(f32).view(np.uint16)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(scale > 0, f32(1) / scale, f32(0)).astype(f32)
    # nearest_int() rounds half to even, as np.rint does; values at or below `low` stay 0.
    q = np.rint(inv_scale[:, None] * (logits - low[:, None]))
    out[:, 4 : 4 + vocab] = np.where(logits > low[:, None], q, 0).astype(np.uint16)
    return out


def decode_header(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, min_log_prob) of each row, float32."""
    import numpy as np

    pair = np.ascontiguousarray(rows[:, :4]).view(np.float32)
    return pair[:, 0], pair[:, 1]


class KldWriter:
    """Writes a `.kld` file chunk by chunk, as llama-perplexity does while it scores."""

    def __init__(self, path: Path, *, ctx: int, n_vocab: int, n_chunk: int, tokens: list[int]):
        import numpy as np

        self._file: IO[bytes] = path.open("wb")
        self._file.write(MAGIC + _HEADER.pack(ctx, n_vocab, n_chunk))
        self._file.write(np.asarray(tokens[: n_chunk * ctx], dtype="<i4").tobytes())

    def write(self, logits: np.ndarray) -> None:
        self._file.write(encode(logits).tobytes())

    def close(self) -> None:
        self._file.close()


@dataclass
class KldReader:
    """A `.kld` file: its header and tokens read at once, the rows a chunk at a time."""

    path: Path
    ctx: int
    n_vocab: int
    n_chunk: int
    tokens: list[int]

    @classmethod
    def open(cls, path: Path) -> KldReader:
        import numpy as np

        try:
            with path.open("rb") as f:
                head = f.read(len(MAGIC) + _HEADER.size)
                if len(head) < len(MAGIC) + _HEADER.size or head[: len(MAGIC)] != MAGIC:
                    raise UsageError(f"{path} is not a .kld file of log-probabilities (no _logits_ header)")
                ctx, n_vocab, n_chunk = _HEADER.unpack(head[len(MAGIC) :])
                if ctx < 4 or n_vocab < 1 or n_chunk < 1:
                    raise UsageError(f"{path}: a damaged .kld header ({ctx=}, {n_vocab=}, {n_chunk=})")
                raw = f.read(4 * ctx * n_chunk)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if len(raw) < 4 * ctx * n_chunk or path.stat().st_size < file_size(ctx, n_vocab, n_chunk):
            raise UsageError(f"{path} is cut short: its header promises {n_chunk} chunks of {ctx} tokens")
        tokens = np.frombuffer(raw, dtype="<i4").tolist()
        return cls(path, ctx, n_vocab, n_chunk, tokens)

    def chunks(self) -> Iterator[np.ndarray]:
        """Each chunk's rows: (ctx − 1 − ctx/2, row_width) uint16."""
        import numpy as np

        width, rows = row_width(self.n_vocab), scored_per_chunk(self.ctx)
        with self.path.open("rb") as f:
            f.seek(len(MAGIC) + _HEADER.size + 4 * self.ctx * self.n_chunk)
            for _ in range(self.n_chunk):
                data = f.read(2 * rows * width)
                yield np.frombuffer(data, dtype="<u2").reshape(rows, width)
