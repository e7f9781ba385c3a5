"""Load a model file once in a child process before the server loads it in its own.

A model file is untrusted input to a C parser: a crafted or damaged GGUF can crash llama.cpp
natively (no Python exception, the process just dies). The server validates the header in
Python, then lets a child process open the file with llama.cpp and evaluate one token; only if
the child survives does the server load the file itself. A success is remembered per file
(path, size, modification time, llama-cpp-python version) on disk, so the cost — about a
second — is paid once per file; a failure is remembered for this process only.

Run as `python -m qwencli.server.probe FILE` it is the child.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

from ..errors import InvalidModelFile

PROBE_TIMEOUT = 300.0


def _engine_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "unknown"


def _key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_engine_version()}"
    return hashlib.sha256(raw.encode()).hexdigest()


class Prober:
    """Probes files in a child process; thread-safe; remembers outcomes."""

    def __init__(self, cache_file: Path | None, command: list[str] | None = None, timeout: float = PROBE_TIMEOUT):
        self.cache_file = cache_file
        self.command = command or [sys.executable, "-m", "qwencli.server.probe"]
        self.timeout = timeout
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}

    def check(self, path: Path) -> None:
        """Return if llama.cpp can open `path` without crashing; raise InvalidModelFile if not."""
        key = _key(path)
        with self._lock:
            if key in self._failed:
                raise InvalidModelFile(self._failed[key], "the file is damaged or not a model llama.cpp can run")
            if key in self._passed():
                return
        message = self._run(path)
        with self._lock:
            if message is not None:
                self._failed[key] = message
                raise InvalidModelFile(message, "the file is damaged or not a model llama.cpp can run")
            self._remember(key)

    def _run(self, path: Path) -> str | None:
        try:
            proc = subprocess.run(
                [*self.command, str(path)],
                capture_output=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except subprocess.TimeoutExpired:
            return f"llama.cpp did not finish opening {path.name} within {self.timeout:.0f} s"
        if proc.returncode == 0:
            return None
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            return f"llama.cpp crashed ({name}) while opening {path.name}"
        lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"llama.cpp could not open {path.name} (exit status {proc.returncode})"

    def _passed(self) -> set[str]:
        if self.cache_file is None or not self.cache_file.exists():
            return set()
        try:
            return set(json.loads(self.cache_file.read_text()))
        except (OSError, ValueError, TypeError):
            return set()

    def _remember(self, key: str) -> None:
        if self.cache_file is None:
            return
        keys = sorted(self._passed() | {key})[-1000:]
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_name(self.cache_file.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(keys))
            tmp.replace(self.cache_file)
        except OSError:
            pass  # an unwritable home only costs a probe next time


def _child(path: str) -> int:
    """Open the model and evaluate one token. Prints one line on failure."""
    from ..errors import QwenError
    from ..formats.gguf import read_model

    try:
        model = read_model(Path(path))
    except QwenError as exc:
        print(exc.message)
        return 1
    import llama_cpp

    try:
        llama = llama_cpp.Llama(
            model_path=str(model.path), n_ctx=256, n_batch=32, n_threads=1, n_gpu_layers=0, verbose=False
        )
        tokens = llama.tokenize(b"probe", add_bos=False, special=False) or [llama.token_eos()]
        llama.eval(tokens[:1])
    except Exception as exc:
        print(f"llama.cpp could not open {model.path.name}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
