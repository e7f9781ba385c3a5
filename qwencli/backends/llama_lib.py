"""llama.cpp's C API without llama-cpp-python's high-level layer, and owners for its handles.

`import llama_cpp` runs the package's `__init__`, which imports `Llama` and with it numpy,
jinja2, diskcache and sqlite3: about 0.1 s of a one-shot run that starts in 0.5 s, for classes
our token loop never uses (it drives the C API: `llamacpp.py`). `binding_only()` puts the
package in `sys.modules` with only its ctypes binding (`llama_cpp.llama_cpp`) loaded; the first
use of any other name (`llama_cpp.Llama`, `llama_cpp.llama_grammar`, …) runs the real `__init__`,
so code that wants the high-level API still gets all of it.

`Model`, `Context`, `Batch` and `SamplerChain` own one C handle each, free it once, and keep the
attribute names of llama-cpp-python's `_internals` wrappers (`.model`, `.ctx`, `.batch`,
`.sampler`) — those wrappers import numpy at module level.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

_FULL_IMPORT = threading.RLock()  # re-entered while the package's __init__ runs


def binding_only() -> None:
    """Make a later `import llama_cpp` cheap (no-op if it is imported already)."""
    if "llama_cpp" in sys.modules:
        return
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.loader is None:
        return  # not installed: the import itself will say so where it happens
    package = importlib.util.module_from_spec(spec)
    loaded = False

    def __getattr__(name: str) -> Any:
        # Names of the C API come from the binding (what `from .llama_cpp import *` would give);
        # anything else is the high-level API: run the package's own __init__ once, then look again.
        nonlocal loaded
        binding = sys.modules.get("llama_cpp.llama_cpp") or importlib.import_module("llama_cpp.llama_cpp")
        if not name.startswith("__") and hasattr(binding, name):
            value = getattr(binding, name)
            setattr(package, name, value)  # found in the package from now on: no second call per name
            return value
        with _FULL_IMPORT:
            if not loaded:
                loaded = True
                spec.loader.exec_module(package)  # type: ignore[union-attr]
        if name in package.__dict__:
            return package.__dict__[name]
        raise AttributeError(f"module 'llama_cpp' has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["llama_cpp"] = package


def warm_numpy() -> None:
    """Import numpy on a side thread while llama.cpp loads a model (a ctypes call that releases
    the GIL): the greedy picker needs it at the first token, and then it is there."""
    if "numpy" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("numpy",), name="import numpy", daemon=True).start()


class Model:
    def __init__(self, path: str, params: Any):
        import llama_cpp

        self.model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
        if not self.model:
            raise ValueError(f"Failed to load model from file: {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def close(self) -> None:
        import llama_cpp

        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None


class Context:
    def __init__(self, model: Model, params: Any):
        import llama_cpp

        self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise ValueError("Failed to create llama_context")

    def close(self) -> None:
        import llama_cpp

        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


RUN = 16  # tokens from which `Batch.write_run` goes through numpy


class Batch:
    def __init__(self, n_tokens: int, n_seq_max: int = 1):
        import llama_cpp

        self.batch = llama_cpp.llama_batch_init(n_tokens, 0, n_seq_max)
        self.size = n_tokens
        self._owned = True

    def one_sequence(self) -> None:
        """Put every entry in sequence 0, once: then a token costs only its token, position and
        logits-flag writes (`write_run`)."""
        batch = self.batch
        for i in range(self.size):
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0

    def write_run(self, tokens: Sequence[int], start: int, *, logits: bool) -> None:
        """`tokens` at positions `start`, `start + 1`, … as the batch's first entries, each one's
        logits flag `logits`; the sequence ids stay as written. From RUN tokens on, through numpy
        arrays over the batch's fields: three ctypes writes a token cost ~90 µs for a 500-token
        slice of a prompt, numpy ~10 (a tiny model reads that slice in ~12 ms)."""
        n = len(tokens)
        if n < RUN:
            batch = self.batch
            token_of, pos_of, flags = batch.token, batch.pos, batch.logits
            for i, token in enumerate(tokens):
                token_of[i] = token
                pos_of[i] = start + i
                flags[i] = logits
            return
        import numpy as np

        token_of, pos_of, flags = self._fields
        token_of[:n] = tokens
        pos_of[:n] = np.arange(start, start + n, dtype=np.int32)
        flags[:n] = logits

    def token_decoder(self, ctx: Any) -> Callable[[int, int], int]:
        """`decode(token, position)`: `llama_decode` of that one token as the batch (logits on; in
        sequence 0, as `one_sequence` wrote), returning its status: a token loop's step. The fields are written through
        one-entry arrays made here once; through the struct, each field access makes a ctypes
        pointer object. Measured between two decodes of the tiny model, on a cache the decode has
        just swept: a loop of nothing but decodes spent ~24 µs a token that way, ~6 this way; a
        reply's step from the end of one token to the next decode went from 7–12 µs to 3–4. The
        logits flag and the count are written every token too: a prompt slice may come between."""
        import ctypes

        import llama_cpp

        batch, decode = self.batch, llama_cpp.llama_decode
        token_of, pos_of = (
            ctypes.cast(f, ctypes.POINTER(ctypes.c_int32 * 1)).contents for f in (batch.token, batch.pos)
        )
        flags = ctypes.cast(batch.logits, ctypes.POINTER(ctypes.c_int8 * 1)).contents

        def decode_one(token: int, position: int) -> int:
            token_of[0] = token
            pos_of[0] = position
            flags[0] = 1
            batch.n_tokens = 1
            return decode(ctx, batch)

        return decode_one

    @functools.cached_property
    def _fields(self) -> tuple[Any, Any, Any]:
        """numpy arrays over the batch's token, position and logits-flag fields."""
        import numpy as np

        batch = self.batch
        token_of, pos_of, flags = (
            np.ctypeslib.as_array(f, shape=(self.size,)) for f in (batch.token, batch.pos, batch.logits)
        )
        return token_of, pos_of, flags

    def close(self) -> None:
        import llama_cpp

        if self._owned:
            llama_cpp.llama_batch_free(self.batch)
            self._owned = False


class SamplerChain:
    """One reply's sampler chain; `add(sampler)` hands a sampler to the chain, which frees it."""

    def __init__(self) -> None:
        import llama_cpp

        self.sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(self, sampler: Any) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_chain_add(self.sampler, sampler)

    def close(self) -> None:
        import llama_cpp

        if self.sampler:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


@functools.cache
def logits_address() -> Any:
    """`llama_get_logits_ith(ctx, i)` returning the row's address as an int: llama-cpp-python's
    binding returns a `POINTER(c_float)`, which costs an object and a cast to turn into an array
    each token. A separate function object (`_lib[name]` makes a new one), so the binding's own
    keeps its types; made once a process."""
    import ctypes

    import llama_cpp

    function = llama_cpp.llama_cpp._lib["llama_get_logits_ith"]
    function.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    function.restype = ctypes.c_void_p
    return function
