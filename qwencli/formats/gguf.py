"""Read and validate a GGUF file's header before llama.cpp touches it.

A model file is untrusted input to a C parser (Ollama has had six CVEs for crafted GGUFs), so
every count, length, type and tensor extent is checked here first; a bad file becomes one
`InvalidModelFile` line, never a segfault.

Plain `struct` over an mmap of the file, and nothing else: this runs on every `qwen run`, and
importing the `gguf` package (numpy with it) cost more than the whole one-shot budget. Scalars and
small arrays are kept; the vocabulary and merges are only walked over (their strings are
length-prefixed, so the tensor table behind them has no other address). About 25 ms for
SmolLM2's 49K tokens and merges; a file that passed is not walked again by a later process while
it stays unchanged (`gguf_memo`). `tests/test_gguf_file.py` checks it against `gguf.GGUFReader`.
"""

from __future__ import annotations

import functools
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidModelFile, ModelNotFound, UnsupportedModel

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_KEY_BYTES = 1 << 16
MAX_TENSOR_NAME = 64  # GGML_MAX_NAME
MAX_DIMS = 4
#: Arrays longer than this are summarized by length (tokens, merges, scores).
KEEP_ARRAY = 512

SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# GGUFValueType → struct format of one element (STRING and ARRAY are handled apart).
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q").unpack_from

# ggml_type → (elements per block, bytes per block), as ggml.c's type_traits (and gguf's GGML_QUANT_SIZES).
GGML_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip
# general.file_type → its name (llama.h's llama_ftype).
FILE_TYPES = (
    "F32 F16 Q4_0 Q4_1 - - - Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K "
    "IQ2_XXS IQ2_XS Q2_K_S IQ3_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ3_M IQ2_S IQ2_M IQ4_XS IQ1_M BF16 - - - "
    "TQ1_0 TQ2_0 MXFP4_MOE NVFP4 Q1_0"
).split()


@dataclass(frozen=True)
class ArraySummary:
    """A long array, kept by length only."""

    element_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFFile:
    """One validated GGUF file (one shard of a set, or the whole model)."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    size: int


@dataclass(frozen=True)
class GGUFModel:
    """A validated model: one file, or every shard of a `-NNNNN-of-MMMMM` set."""

    path: Path  # the file llama.cpp is given (the first shard of a set)
    files: tuple[GGUFFile, ...]
    metadata: dict[str, Any] = field(repr=False)

    @property
    def shards(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if isinstance(value, int) and value > 0 else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def pooling_type(self) -> int:
        """llama.cpp's `<arch>.pooling_type` (1 mean, 2 cls, 3 last, 4 rank); 0 when the file declares
        none, as chat models do. Embedding and rerank conversions declare one."""
        value = self.arch_value("pooling_type")
        return value if isinstance(value, int) and value > 0 else 0

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for f in self.files for t in f.tensors)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if not isinstance(file_type, int) or not 0 <= file_type < len(FILE_TYPES) or FILE_TYPES[file_type] == "-":
            return "unknown"
        return FILE_TYPES[file_type]

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token of context costs at f16, for sizing the context."""
        layers = int(self.arch_value("block_count", 0) or 0)
        interval = self.arch_value("full_attention_interval")
        if isinstance(interval, int) and interval > 1:
            # Hybrid (Qwen3.5+, Qwen3-Next): one layer in `interval` has a KV cache; the Gated
            # DeltaNet layers keep a fixed-size state whatever the context.
            layers //= interval
        heads = int(self.arch_value("attention.head_count", 1) or 1)
        kv_heads = self.arch_value("attention.head_count_kv", heads)
        if isinstance(kv_heads, ArraySummary) or isinstance(kv_heads, list):
            kv_heads = max(kv_heads) if isinstance(kv_heads, list) else heads
        embd = int(self.arch_value("embedding_length", 0) or 0)
        key_len = int(self.arch_value("attention.key_length", embd // max(heads, 1)) or 0)
        value_len = int(self.arch_value("attention.value_length", key_len) or 0)
        return layers * int(kv_heads or heads) * (key_len + value_len) * 2


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def fail(self, what: str) -> InvalidModelFile:
        return InvalidModelFile(
            f"{self.path.name} is not a valid GGUF file: {what}",
            "the file is damaged or truncated; download it again (qwen pull …)",
        )

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"header ends early at byte {self.pos} (truncated file?)")

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize("<" + fmt)
        self.need(n)
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self, limit: int | None = None) -> str:
        length = self.unpack("Q")
        if limit is not None and length > limit:
            raise self.fail(f"a string of {length} bytes where at most {limit} are allowed")
        self.need(length)
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.unpack("Q")
        self.need(length)
        self.pos += length

    def skip_strings(self, count: int) -> None:
        """Walk over `count` strings (a vocabulary): the hot loop of the reader, so locals only."""
        buf, pos, unpack = self.buf, self.pos, _U64
        try:
            for _ in range(count):
                pos += 8 + unpack(buf, pos)[0]
        except struct.error:  # a length field past the end
            pos = self.size + 1
        if pos > self.size:
            raise self.fail(f"header ends early at byte {self.pos} (truncated file?)")
        self.pos = pos

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth > 1:
                raise self.fail("arrays nested more than two deep")
            etype = self.unpack("I")
            length = self.unpack("Q")
            if etype not in _SCALAR and etype not in (_STRING, _ARRAY):
                raise self.fail(f"unknown array element type {etype}")
            # Every element takes at least one byte (a string at least eight): bound the count.
            min_size = 8 if etype in (_STRING, _ARRAY) else struct.calcsize("<" + _SCALAR[etype])
            if length * min_size > self.size - self.pos:
                raise self.fail(f"an array of {length} elements does not fit in the file")
            if length <= KEEP_ARRAY:
                return [self.value(etype, depth + 1) for _ in range(length)]
            if etype == _STRING:
                self.skip_strings(length)
            elif etype == _ARRAY:
                for _ in range(length):
                    self.value(etype, depth + 1)
            else:
                self.need(length * min_size)
                self.pos += length * min_size
            return ArraySummary(etype, length)
        raise self.fail(f"unknown value type {vtype}")


def read_gguf_file(path: Path) -> GGUFFile:
    """Parse and check one GGUF file; raise InvalidModelFile on anything off."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ModelNotFound(f"no such file: {path}", "give a path to a .gguf file or a model name") from None
    except IsADirectoryError:
        raise InvalidModelFile(f"{path} is a directory, not a GGUF file", "give the path of the .gguf file") from None
    except PermissionError:
        raise InvalidModelFile(f"cannot read {path}: permission denied") from None
    with handle:
        size = path.stat().st_size
        if size < 24:
            raise InvalidModelFile(f"{path.name} is not a GGUF file ({size} bytes)", _not_gguf_hint(path))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != GGUF_MAGIC:
                raise InvalidModelFile(f"{path.name} is not a GGUF file", _not_gguf_hint(path, buf[:8]))
            cur = _Cursor(buf, path)
            cur.pos = 4
            version = cur.unpack("I")
            if version not in SUPPORTED_VERSIONS:
                raise cur.fail(f"GGUF version {version} (supported: 2 and 3; big-endian files are not)")
            n_tensors = cur.unpack("Q")
            n_kv = cur.unpack("Q")
            if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
                raise cur.fail(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string(MAX_KEY_BYTES)
                vtype = cur.unpack("I")
                if key in metadata:
                    raise cur.fail(f"duplicate metadata key {key!r}")
                metadata[key] = cur.value(vtype)
            alignment = metadata.get("general.alignment", 32)
            if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
                raise cur.fail(f"bad alignment {alignment!r}")
            infos = []
            for _ in range(n_tensors):
                name = cur.string(MAX_TENSOR_NAME)
                n_dims = cur.unpack("I")
                if not 1 <= n_dims <= MAX_DIMS:
                    raise cur.fail(f"tensor {name!r} has {n_dims} dimensions")
                shape = tuple(cur.unpack("Q") for _ in range(n_dims))
                ggml_type = cur.unpack("I")
                offset = cur.unpack("Q")
                infos.append((name, shape, ggml_type, offset))
            data_offset = cur.pos + (-cur.pos) % alignment
    tensors = []
    seen: set[str] = set()
    for name, shape, ggml_type, offset in infos:
        if name in seen:
            raise cur.fail(f"tensor {name!r} appears twice")
        seen.add(name)
        if ggml_type not in GGML_BLOCKS:
            raise cur.fail(f"tensor {name!r} has unknown type {ggml_type}")
        block, type_size = GGML_BLOCKS[ggml_type]
        n_elements = 1
        for d in shape:
            if d <= 0 or d > 1 << 40:
                raise cur.fail(f"tensor {name!r} has dimension {d}")
            n_elements *= d
        if shape[0] % block or n_elements > 1 << 44:
            raise cur.fail(f"tensor {name!r} has shape {shape} that its type cannot hold")
        n_bytes = n_elements // block * type_size
        if offset % alignment:
            raise cur.fail(f"tensor {name!r} is not aligned")
        if data_offset + offset + n_bytes > size:
            raise InvalidModelFile(
                f"{path.name} is truncated: tensor {name!r} ends at byte {data_offset + offset + n_bytes:,}"
                f" but the file has {size:,}",
                "the download is incomplete; run qwen pull again to resume it",
            )
        tensors.append(TensorInfo(name, shape, ggml_type, offset, n_bytes))
    return GGUFFile(path, version, metadata, tuple(tensors), data_offset, size)


def projector_arch(path: Path) -> str | None:
    """The projector type a GGUF file declares (`clip.projector_type`), or None if it is not a projector."""
    try:
        gguf = read_gguf_file(path)
    except Exception:
        return None
    if gguf.metadata.get("general.architecture") != "clip":
        return None
    kind = gguf.metadata.get("clip.projector_type")
    return str(kind) if kind else "clip"


def _not_gguf_hint(path: Path, head: bytes = b"") -> str:
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        return "this looks like safetensors weights; the torch backend loads those (--backend torch)"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "this looks like a PyTorch pickle; qwencli does not load pickled weights"
    if re.search(r"\.gguf\.[a-z]$", path.name):
        return "this is one part of a byte-split model; qwen pull joins the parts into one file"
    return "qwencli runs GGUF files (llama.cpp) and Hugging Face safetensors repos"


def shard_paths(path: Path) -> tuple[Path, ...]:
    """All files of a `-00001-of-0000N.gguf` set given any of them; just `path` otherwise."""
    match = SHARD_RE.match(path.name)
    if not match:
        return (path,)
    count = int(match["count"])
    width = len(match["no"])
    names = [f"{match['stem']}-{i:0{width}d}-of-{match['count']}.gguf" for i in range(1, count + 1)]
    paths = tuple(path.with_name(n) for n in names)
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise InvalidModelFile(
            f"shard set {match['stem']} is incomplete: missing {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
            "all shards must sit in the same folder; qwen pull fetches the whole set",
        )
    return paths


def read_model(path: Path) -> GGUFModel:
    """Validate a model file (every shard of a set) and its architecture. A file read before, and
    unchanged since (same size, modification time and inode), is not parsed again: walking a
    vocabulary costs ~0.6 µs a token (30 ms at 49K, 150 ms at Qwen3.5's 248K) and a run asks twice
    (what the model is for, then the load)."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelNotFound(
            f"no such file: {path}", "give a path to a .gguf file or a model name (qwen list)"
        ) from None
    except OSError:
        return _read_model(path)  # let the reader explain (a directory, no permission…)
    return _read_model_once(path.absolute(), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=8)
def _read_model_once(path: Path, size: int, mtime_ns: int, inode: int) -> GGUFModel:
    return _read_model(path)  # failures raise, and are not cached


def _read_model(path: Path) -> GGUFModel:
    from .. import settings
    from . import gguf_memo

    paths = shard_paths(path)
    home, where = settings.load().home, path.absolute()
    files = gguf_memo.recall(home, where)
    checked = files is not None and tuple(f.path for f in files) == paths
    if not checked:
        files = tuple(read_gguf_file(p) for p in paths)
    assert files is not None
    first = files[0]
    metadata = first.metadata
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile(f"{path.name} has no general.architecture", "the file is not a complete model")
    if arch not in llama_architectures():
        raise UnsupportedModel(
            f"{path.name}: architecture {arch!r} is not supported by this llama.cpp",
            "upgrade llama-cpp-python, or use a model of a supported architecture",
        )
    expected = metadata.get("split.tensors.count")
    if isinstance(expected, int) and expected != sum(len(f.tensors) for f in files):
        raise InvalidModelFile(
            f"shard set of {path.name} holds {sum(len(f.tensors) for f in files)} tensors, expected {expected}",
            "a shard is from another model or damaged; pull the model again",
        )
    model = GGUFModel(path=paths[0], files=files, metadata=metadata)
    check_engine_asserts(model)
    if not checked:
        gguf_memo.remember(home, where, files)
    return model


@functools.cache
def llama_architectures() -> frozenset[str]:
    """The architectures the linked llama.cpp loads (`data/llama_architectures.txt`, from its
    source; a test checks each name against the library)."""
    text = (Path(__file__).parent.parent / "data" / "llama_architectures.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def check_engine_asserts(model: GGUFModel) -> None:
    """Hyperparameters that pass llama.cpp's loader but trip a GGML_ASSERT later (an abort, status
    134, in the middle of the first prompt), caught here as one clear error instead."""
    sections = model.arch_value("rope.dimension_sections")
    if isinstance(sections, list) and all(isinstance(s, int) for s in sections):
        sections = sections[:4]  # llama.cpp reads four (time, height, width, extra)
        heads = int(model.arch_value("attention.head_count", 1) or 1)
        head_dim = model.arch_value("attention.key_length", int(model.arch_value("embedding_length", 0) or 0) // heads)
        # ggml's M-RoPE cache asserts that the sections fit one head (ggml-cpu/ops.cpp, sect_dims <= ne0).
        if isinstance(head_dim, int) and head_dim > 0 and sum(sections) > head_dim:
            raise InvalidModelFile(
                f"{model.path.name}: its M-RoPE sections ({' + '.join(map(str, sections))} = {sum(sections)}) "
                f"are wider than its attention heads ({head_dim} dimensions); llama.cpp would abort on it",
                "the file was written with rope.dimension_sections for another head size; convert the model again",
            )
