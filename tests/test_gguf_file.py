"""GGUF validation: agrees with gguf.GGUFReader on real files; rejects bad files in Python with
one clear error before llama.cpp sees them."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from qwencli.errors import InvalidModelFile, ModelNotFound, UnsupportedModel
from qwencli.formats.gguf import FILE_TYPES, GGML_BLOCKS, ArraySummary, llama_architectures, read_model


@pytest.mark.slow  # gguf's reader takes seconds over a 152K-token vocabulary
@pytest.mark.parametrize("fixture", ["smollm2", "tiny_qwen3_gguf"])
def test_metadata_agrees_with_gguf_reader(fixture, request):
    path = request.getfixturevalue(fixture)
    ours = read_model(path)
    reader = gguf.GGUFReader(path)
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.metadata[key]
        if isinstance(value, ArraySummary):
            assert value.length == len(field.data)
        else:
            expected = field.contents()
            assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected
    assert len(ours.files[0].tensors) == len(reader.tensors)
    assert ours.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert ours.files[0].data_offset == reader.data_offset


def test_facts_of_the_real_model(smollm2):
    model = read_model(smollm2)
    assert (model.architecture, model.context_length, model.quantization) == ("llama", 8192, "Q4_1")
    assert model.chat_template.startswith("{% for message in messages %}")
    assert 130e6 < model.parameter_count < 140e6


def _header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_string(key: str, value: bytes, declared: int | None = None) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", declared or len(value)) + value


BAD_FILES = {
    "empty": (b"", "is not a GGUF file"),
    "text": (b"hello, I am not a model at all, just some text\n" * 3, "is not a GGUF file"),
    "old version": (_header(0, 0, version=1) + b"\0" * 16, "GGUF version 1"),
    "implausible counts": (_header(1 << 40, 1) + b"\0" * 16, "implausible counts"),
    "string past the end": (_header(0, 1) + _kv_string("general.architecture", b"llama", 1 << 50), "header ends early"),
    "unknown value type": (_header(0, 1) + struct.pack("<Q", 4) + b"abcd" + struct.pack("<I", 99) + b"\0" * 8,
                           "unknown value type"),
    "no architecture": (_header(0, 1) + _kv_string("general.name", b"x"), "no general.architecture"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_headers_are_rejected(case, tmp_path):
    data, message = BAD_FILES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(InvalidModelFile, match=message):
        read_model(path)


def test_truncated_file_names_the_problem(smollm2, tmp_path):
    path = tmp_path / "half.gguf"
    with open(smollm2, "rb") as src:
        path.write_bytes(src.read(smollm2.stat().st_size // 2))
    with pytest.raises(InvalidModelFile, match="truncated") as info:
        read_model(path)
    assert "qwen pull" in info.value.hint


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelNotFound):
        read_model(tmp_path / "nope.gguf")
    with pytest.raises(InvalidModelFile, match="directory"):
        read_model(tmp_path)


def write_tiny_gguf(path, arch: str, tensors: dict[str, np.ndarray] | None = None) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    for name, value in (tensors or {"token_embd.weight": np.zeros((8, 4), np.float32)}).items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "alien.gguf"
    write_tiny_gguf(path, "alienformer")
    with pytest.raises(UnsupportedModel, match="alienformer"):
        read_model(path)


def test_incomplete_shard_set(tmp_path):
    path = tmp_path / "m-00001-of-00002.gguf"
    write_tiny_gguf(path, "llama")
    with pytest.raises(InvalidModelFile, match="missing m-00002-of-00002.gguf"):
        read_model(path)


def test_type_tables_agree_with_the_gguf_package():
    """The reader ships ggml's block sizes and llama.cpp's file types as tables (no `gguf` import
    at run time); they must say what the `gguf` package says."""
    assert GGML_BLOCKS == {int(t): size for t, size in gguf.GGML_QUANT_SIZES.items()}
    named = {i: name for i, name in enumerate(FILE_TYPES) if name != "-"}
    expected = {int(t): t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in gguf.LlamaFileType}
    assert named == {i: n for i, n in expected.items() if n != "GUESSED"}


def test_architecture_list_is_the_linked_llama_cpp():
    """Each architecture we accept is a name compiled into the libllama that will load it (the
    linker may share a name's bytes with the tail of a longer one, hence the suffix match)."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    binary = b"".join(p.read_bytes() for p in lib.glob("libllama*") if p.is_file() and not p.is_symlink())
    names = llama_architectures()
    assert {"llama", "qwen2", "qwen3", "qwen3moe"} <= names
    assert [n for n in sorted(names) if n.encode() + b"\0" not in binary] == []


@pytest.mark.slow
def test_an_architecture_the_linked_llama_cpp_lacks_is_unsupported(tmp_path, monkeypatch):
    """Our list and the library can disagree (another llama-cpp-python): the library has the last word,
    read from llama.cpp's log, also after llama-cpp-python's `Llama` layer (which sets its own
    logger when first used, as an embeddings load does) was imported."""
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    from qwencli.backends import llama_load
    from qwencli.backends.llamacpp import LlamaCppBackend

    llama_load._LOG.install()  # as an earlier load did; then `Llama`'s first use sets its logger:
    llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    from qwencli.formats import gguf as gguf_format

    path = tmp_path / "alien.gguf"
    write_tiny_gguf(path, "alienformer")
    known = gguf_format.llama_architectures()
    monkeypatch.setattr(gguf_format, "llama_architectures", lambda: known | {"alienformer"})
    with pytest.raises(UnsupportedModel, match="'alienformer' is not supported by this llama.cpp"):
        LlamaCppBackend(path)


def test_an_unchanged_file_is_read_once_and_a_changed_one_again(smollm2, tmp_path):
    """A run asks twice (what the model is for, then the load); the vocabulary walk is paid once.
    A file rewritten in place (another size or time) is validated again."""
    import os
    import shutil

    copy = tmp_path / "m.gguf"
    shutil.copyfile(smollm2, copy)
    first = read_model(copy)
    assert read_model(copy) is first
    with open(copy, "r+b") as handle:  # truncated in place: now it must fail
        handle.truncate(copy.stat().st_size // 2)
    os.utime(copy, ns=(first_ns := copy.stat().st_mtime_ns + 10**9, first_ns))
    with pytest.raises(InvalidModelFile):
        read_model(copy)
