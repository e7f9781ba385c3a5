"""`qwen pull` / `qwen run NAME` bad input and bad hubs: one clear line, non-zero exit, nothing half-installed."""

from __future__ import annotations

import resource
import signal
import socket
import time

import pytest

from qwencli.models import store
from tests.fixtures.hub import random_bytes
from tests.processes import run_qwen
from tests.test_pull_e2e import FILE, REPO, SIZE, add_blob_repo, cdn_bytes, partials, repo_folder, text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECRET = "hf_tEsTsEcReT0123456789abcdef"


def failed(result, status: int = 1) -> str:
    err = result.stderr.decode()
    assert result.returncode == status, text(result)
    assert "Traceback" not in err and result.stdout == b""
    assert err.startswith("Error: "), err
    assert store.list_models() == []
    return err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_unknown_repo_is_a_404_with_a_hint(hub):
    err = failed(run_qwen("pull", "nobody/Nothing-GGUF", timeout=30))
    assert "nobody/Nothing-GGUF was not found on the hub" in err
    assert not repo_folder("nobody/Nothing-GGUF").exists()


def test_a_quant_the_repo_lacks_lists_the_ones_it_has(hub):
    add_blob_repo(hub)
    err = failed(run_qwen("pull", f"{REPO}:q5_k_m", timeout=30))
    assert f"{REPO} has no q5_k_m GGUF" in err and "available quants: q8_0" in err
    assert cdn_bytes(hub) == 0


def test_private_repo_needs_the_token_which_is_never_printed(hub):
    add_blob_repo(hub, private=True, token="hf_the_right_one")
    for env in ({}, {"HF_TOKEN": SECRET}, {"HF_TOKEN": SECRET, "QWEN_DEBUG": "1"}):
        result = run_qwen("pull", REPO, env=env, timeout=30)
        assert result.returncode == 1
        out = text(result)
        assert "HF_TOKEN" in out and "private" in out, out
        assert SECRET not in out
    assert store.list_models() == []
    ok = run_qwen("pull", REPO, env={"HF_TOKEN": "hf_the_right_one"}, timeout=30)
    assert ok.returncode == 0, text(ok)
    assert "hf_the_right_one" not in text(ok)
    # The token went to the hub, never to the CDN (another origin).
    assert not any(r.authorization for r in hub.log if r.server == "cdn")
    assert any(r.authorization for r in hub.log if r.server == "api")


def test_gated_repo_says_so_and_points_to_hf_token(hub):
    add_blob_repo(hub, gated=True, token="hf_accepted")
    err = failed(run_qwen("pull", REPO, env={"HF_TOKEN": SECRET}, timeout=30))
    assert "gated" in err and "HF_TOKEN" in err and SECRET not in err
    assert cdn_bytes(hub) == 0


def test_hub_5xx_is_retried_then_reported(hub):
    add_blob_repo(hub)
    hub.fault("api", status=500, times=1)
    ok = run_qwen("pull", REPO, timeout=30)
    assert ok.returncode == 0, text(ok)  # a brief 500 is retried

    hub.faults.clear()
    add_blob_repo(hub, repo="test/Other-GGUF")
    hub.fault("api", status=503)
    err = failed_other = run_qwen("pull", "test/Other-GGUF", timeout=30)
    assert failed_other.returncode == 1 and "the hub answered 503" in err.stderr.decode()
    assert [m.name for m in store.list_models()] == [f"{REPO}:q8_0"]  # the store is intact


def test_cdn_5xx_keeps_nothing_half_installed(hub):
    add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", status=500)
    err = failed(run_qwen("pull", REPO, timeout=30))
    assert "500" in err


def test_unreachable_hub_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    err = failed(run_qwen("pull", REPO, timeout=60))
    assert "cannot reach the hub at http://127.0.0.1:" in err and "HF_HUB_OFFLINE" in err
    assert time.monotonic() - started < 30
    err = failed(run_qwen("run", REPO, "hi", timeout=60))
    assert "cannot reach the hub" in err


def test_offline_without_the_model_says_what_to_do(hub):
    add_blob_repo(hub)
    for args in (("run", REPO, "hi"), ("pull", REPO)):
        err = failed(run_qwen(*args, env={"HF_HUB_OFFLINE": "1"}, timeout=30))
        assert "HF_HUB_OFFLINE=1" in err
    assert hub.log == []


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_keeps_the_bytes_and_the_next_pull_resumes(hub):
    data = add_blob_repo(hub)
    result = run_qwen("pull", REPO, timeout=30, preexec_fn=_file_size_limit(1 << 20))
    err = failed(result)
    assert "the disk is full while writing blob-q8_0.gguf" in err and "kept" in err, err
    [partial] = partials()
    kept = partial.stat().st_size
    assert kept <= 1 << 20

    hub.reset_log()
    ok = run_qwen("pull", REPO, timeout=30)
    assert ok.returncode == 0, text(ok)
    assert cdn_bytes(hub) == SIZE - kept
    assert store.list_models()[0].path.read_bytes() == data


def test_too_big_for_memory_suggests_a_quant_that_fits(hub):
    petabyte = 1 << 50
    hub.add_repo("test/Big-GGUF", {"big-q8_0.gguf": random_bytes(10, 1), "big-q4_k_m.gguf": random_bytes(3000, 2),
                                   "big-q2_k.gguf": random_bytes(2000, 3)},
                 declared={"big-q8_0.gguf": petabyte})
    err = failed(run_qwen("pull", "test/Big-GGUF:q8_0", timeout=30))
    assert "test/Big-GGUF:q8_0 needs about" in err and "of memory" in err
    assert "q4_k_m (3.0 KB) fits: qwen pull test/Big-GGUF:q4_k_m" in err and "--force" in err

    # --force skips the memory check, and the disk check still stops a download that cannot fit.
    err = failed(run_qwen("pull", "test/Big-GGUF:q8_0", "--force", timeout=30))
    assert "not enough disk space" in err and "HF_HOME" in err
    assert cdn_bytes(hub, "test/Big-GGUF", "big-q8_0.gguf") == 0

    ok = run_qwen("pull", "test/Big-GGUF", "--quant", "auto", timeout=30)
    assert ok.returncode == 0, text(ok)
    assert [m.name for m in store.list_models()] == ["test/Big-GGUF:q4_k_m"]


@pytest.mark.parametrize("args,status,message", [
    (("pull", "../etc/passwd"), 2, "is a path"),
    (("pull", "/etc/passwd"), 2, "is a path"),
    (("pull", "hf.co/../etc/passwd"), 2, "not a hub repo id"),
    (("pull", "evil/..\\..\\x"), 2, "not a hub repo id"),
    (("pull", "qwen2.5-7b:q4:q8"), 1, "unknown model"),
    (("pull", "qwen2.5-7b", "--quant", "../x"), 2, "not a quantization name"),
    (("pull", "qwen2.5-7b:q8_0", "--quant", "q4_k_m"), 2, "--quant says q4_k_m"),
    (("pull", "qwne2.5-7b"), 1, "did you mean qwen2.5-7b"),
    (("pull", "qwen1.5-moe-a2.7b"), 1, "torch backend"),
    (("run", "qwen1.5-moe-a2.7b", "hi"), 1, "no GGUF build"),
])
def test_bad_names_fail_before_any_request(hub, args, status, message):
    err = failed(run_qwen(*args, timeout=30), status)
    assert message in err, err
    assert hub.log == []


@pytest.mark.parametrize("path", ["../../evil-q8_0.gguf", "a/../../evil-q8_0.gguf", "/abs/evil-q8_0.gguf"])
def test_a_hub_listing_an_unsafe_file_name_writes_nothing(hub, tmp_path, path):
    hub.add_repo("evil/Repo-GGUF", {path: random_bytes(1000, 1)})
    err = failed(run_qwen("pull", "evil/Repo-GGUF", timeout=30))
    assert "unsafe file name" in err
    assert cdn_bytes(hub, "evil/Repo-GGUF", path) == 0
    assert not repo_folder("evil/Repo-GGUF").exists()
