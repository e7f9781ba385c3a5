"""`qwen serve MODEL --engine vllm|sglang`: plan, start the engine, wait for it, put the relay in front
(or `--direct`: the engine on the address asked for), and stop it all on Ctrl-C or SIGTERM.

Exit status: 0 after a stop asked for; 1 when the engine crashes, does not start in time, or stops on
its own (its log's last lines are printed); 2 for a usage error (no GPU described, no engine installed).
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import shutil
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import UsageError
from ..server.config import ServerConfig
from .child import EngineChild, EngineFailed
from .plan import EnginePlan, Machine, Overrides, make_plan

INSTALL = {"vllm": "pip install 'qwencli[vllm]'", "sglang": "pip install 'qwencli[sglang]'"}
DEFAULT_START_TIMEOUT = 1800.0  # a 235B model from a network disk takes many minutes to load


@dataclass(frozen=True)
class EngineServe:
    model: str
    engine: str
    machine: Machine
    overrides: Overrides = Overrides()
    config: ServerConfig = ServerConfig()
    port: int = 8000
    direct: bool = False
    log_file: Path | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT


def find_program(engine: str) -> tuple[str, ...]:
    """How to start `engine` here, or a one-line UsageError naming the install command."""
    if engine == "vllm":
        # PATH first; then beside this Python (`pip install 'qwencli[vllm]'` into a venv not activated).
        found = shutil.which("vllm") or shutil.which("vllm", path=str(Path(sys.executable).parent))
        if found:
            return (found, "serve")
        raise UsageError("vLLM is not installed (no `vllm` on PATH)", INSTALL["vllm"])
    if find_spec("sglang") is not None:  # the package only: importing it loads torch
        return (sys.executable, "-m", "sglang.launch_server")
    raise UsageError("SGLang is not installed (no `sglang` module in this Python)", INSTALL["sglang"])


def plan_for(request: EngineServe, *, port: int | None = None, program: tuple[str, ...] | None = None) -> EnginePlan:
    from ..models.cache import hub_cache
    from .facts import facts_for

    host = request.config.host if request.direct else "127.0.0.1"
    return make_plan(
        request.engine,
        facts_for(request.model),
        request.machine,
        request.overrides,
        host=host,
        port=request.port if port is None else port,
        hub_cache=str(hub_cache()),
        program=program,
    )


def dry_run_text(plan: EnginePlan) -> str:
    """What --dry-run prints on stdout: the commands, each one line a shell can run."""
    lines = []
    lines += [shlex.join(argv) for argv in plan.before]
    if plan.env:  # a line of its own, so the command stays the one the engine's docs give
        lines.append("# environment: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in plan.env))
    lines.append(shlex.join(plan.argv))
    for n, argv in enumerate(plan.other_nodes, start=1):
        lines.append(f"# node {n}: " + shlex.join(argv))
    return "\n".join(lines)


def serve_engine(request: EngineServe) -> int:
    from .. import settings
    from ..console import notice

    if request.machine.nodes > 1 and not request.machine.head_address:
        raise UsageError(
            "--nodes needs the address the other nodes reach this one at",
            "pass --head-address (--dry-run shows the commands with a placeholder)",
        )
    program = find_program(request.engine)
    engine_port = request.port if request.direct else _free_port()
    if request.direct and engine_port == 0:
        engine_port = _free_port()
    plan = plan_for(request, port=engine_port, program=program)
    env = plan.environment
    upstream_key = None
    if not request.direct and request.engine == "vllm":
        upstream_key = secrets.token_urlsafe(24)
        env["VLLM_API_KEY"] = upstream_key  # in the environment, not argv: `ps` shows argv to every user
    elif request.direct and request.config.api_key and request.engine == "vllm":
        env["VLLM_API_KEY"] = request.config.api_key
    log_path = request.log_file or settings.load().home / "logs" / f"{request.engine}.log"
    for line in plan.reasons:
        notice(f"{request.engine}: {line}")
    for argv in plan.before:
        notice(f"first, on this node: {shlex.join(argv)}")  # a Ray head outlives us: the user starts it
    for n, argv in enumerate(plan.other_nodes, start=1):
        notice(f"run on node {n}: {shlex.join(argv)}")
    child = EngineChild(plan.argv, env, log_path, f"http://127.0.0.1:{engine_port}")
    notice(f"started {request.engine} (pid {child.pid}), log: {log_path}")
    stop = threading.Event()
    previous = _raise_on_sigterm()
    try:
        child.wait_ready(request.start_timeout, progress=sys.stderr.isatty())
        notice(f"{request.engine} is ready")
        if request.direct:
            print(f"http://{_url_host(request.config.host)}:{engine_port}/v1", flush=True)
            return _watch_direct(child, stop)
        return _run_relay(request, plan, child, upstream_key, stop)
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        child.stop()
        _restore(previous)


def _watch_direct(child: EngineChild, stop: threading.Event) -> int:
    child.process.wait()
    failed = child.crashed()
    if failed is not None:
        raise failed
    return 0


def _run_relay(
    request: EngineServe, plan: EnginePlan, child: EngineChild, upstream_key: str | None, stop: threading.Event
) -> int:
    import uvicorn

    from ..server.run import GRACE_SECONDS, bind, log_config
    from .relay import create_relay_app

    sizing_len = _arg(plan.argv, "--max-model-len") or _arg(plan.argv, "--context-length")
    app = create_relay_app(
        request.config,
        child.base_url,
        model=_arg(plan.argv, "--served-model-name") or request.model,
        engine=request.engine,
        context=int(sizing_len) if sizing_len else None,
        upstream_key=upstream_key,
    )
    sock = bind(request.config.host, request.port)
    crash: list[EngineFailed] = []

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # As `server.run`: a graceful stop on SIGTERM is a success, not uvicorn's re-raised signal.
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    server = Server(uvicorn.Config(app, log_config=log_config(False), http="h11", lifespan="on",
                                   proxy_headers=False, server_header=False,
                                   timeout_graceful_shutdown=GRACE_SECONDS))  # fmt: skip

    def watch() -> None:
        child.process.wait()
        if not stop.is_set():
            crash.append(child.crashed() or EngineFailed(f"{request.engine} stopped"))
            server.should_exit = True

    threading.Thread(target=watch, daemon=True, name="engine watch").start()
    print(f"http://{_url_host(request.config.host)}:{sock.getsockname()[1]}/v1", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if crash:
        raise crash[0]
    return 0


def _arg(argv: tuple[str, ...], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _raise_on_sigterm():
    """While we wait for the engine, SIGTERM stops like Ctrl-C (uvicorn takes over once it serves)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore(previous) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
