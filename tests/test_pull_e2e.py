"""`qwen pull` end to end: real CLI subprocesses against the loopback hub (tests/fixtures/hub.py).

Most repos hold random byte blobs named like GGUF files: a pull never loads the weights, and small
files keep these tests fast. Where a model must load and answer, the tiny Qwen GGUF is served.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from qwencli.models import store
from qwencli.models.cache import hub_cache
from tests.fixtures.hub import Fault, random_bytes
from tests.models import ROOT
from tests.processes import QWEN, run_qwen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REPO = "test/Blob-GGUF"
FILE = "blob-q8_0.gguf"
SIZE = 4 << 20


def add_blob_repo(hub, size: int = SIZE, repo: str = REPO, file: str = FILE, **kwargs) -> bytes:
    data = random_bytes(size, seed=len(repo) + size)
    hub.add_repo(repo, {file: data, "README.md": b"---\nlicense: mit\n---\n# test\n"}, **kwargs)
    return data


def repo_folder(repo: str = REPO) -> Path:
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def partials(repo: str = REPO) -> list[Path]:
    return sorted((repo_folder(repo) / "blobs").glob("*.incomplete"))


def installed() -> list[str]:
    return [m.name for m in store.list_models()]


def cdn_bytes(hub, repo: str = REPO, file: str = FILE) -> int:
    return hub.bytes_sent(repo, file)


def text(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode() + result.stdout.decode()


# -- the happy path -----------------------------------------------------------------------------------

def test_pull_off_a_terminal_prints_only_a_final_line_and_installs_a_verified_file(hub):
    data = add_blob_repo(hub)
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 0, text(result)
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pulled {REPO}:q8_0: 4.2 MB in "), lines
    [model] = store.list_models()
    assert model.path.read_bytes() == data
    assert model.path.is_symlink() and model.path.resolve().name == hashlib.sha256(data).hexdigest()
    assert partials() == []
    assert cdn_bytes(hub) == SIZE

    hub.reset_log()
    again = run_qwen("pull", REPO, timeout=60)
    assert again.returncode == 0 and "is up to date" in again.stderr.decode()
    assert cdn_bytes(hub) == 0  # only the listing is fetched again


def test_pull_on_a_terminal_shows_a_bar_with_bytes_and_speed(hub):
    pexpect = pytest.importorskip("pexpect")
    add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", rate=4 << 20)  # about a second, so the bar is drawn a few times
    child = pexpect.spawn(QWEN[0], [*QWEN[1:], "pull", REPO], cwd=str(ROOT), env=dict(os.environ, COLUMNS="120"),
                          timeout=30, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    shown = child.before.decode(errors="replace")
    assert child.exitstatus == 0, shown
    assert FILE in shown and "MB/s" in shown and "4.2 MB" in shown
    assert f"pulled {REPO}:q8_0" in shown


def test_catalog_name_pulls_the_catalog_default_quant(hub):
    repo = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    hub.add_repo(repo, {"qwen2.5-0.5b-instruct-q8_0.gguf": random_bytes(3000, 1),
                        "qwen2.5-0.5b-instruct-q4_k_m.gguf": random_bytes(2000, 2),
                        "qwen2.5-0.5b-instruct-q2_k.gguf": random_bytes(1000, 3)})
    result = run_qwen("pull", "qwen2.5:0.5b", timeout=60)
    assert result.returncode == 0, text(result)
    assert installed() == ["qwen2.5-0.5b:q4_k_m"]
    result = run_qwen("pull", "qwen2.5-0.5b", "--quant", "Q8_0", timeout=60)
    assert result.returncode == 0, text(result)
    assert installed() == ["qwen2.5-0.5b:q4_k_m", "qwen2.5-0.5b:q8_0"]


def test_shard_set_in_a_per_quant_folder_is_pulled_whole(hub):
    shards = {f"Q4_K_M/m-Q4_K_M-0000{i}-of-00003.gguf": random_bytes(1000 + i, i) for i in (1, 2, 3)}
    hub.add_repo("test/Shards-GGUF", {**shards, "m-Q8_0.gguf": random_bytes(5000, 9)})
    result = run_qwen("pull", "test/Shards-GGUF:q4_k_m", timeout=60)
    assert result.returncode == 0, text(result)
    [model] = store.list_models()
    assert (model.name, model.layout, model.size) == ("test/Shards-GGUF:q4_k_m", "shards", 3006)
    assert model.path.name == "m-Q4_K_M-00001-of-00003.gguf"
    assert sorted(p.name for p in (repo_folder("test/Shards-GGUF") / "blobs").iterdir()) == sorted(
        hashlib.sha256(d).hexdigest() for d in shards.values())


def test_byte_split_parts_are_joined_once_into_one_gguf_that_answers(hub, tiny_qwen2_gguf):
    whole = tiny_qwen2_gguf.read_bytes()
    third = len(whole) // 3
    parts = {"tiny-q8_0.gguf.a": whole[:third], "tiny-q8_0.gguf.b": whole[third:2 * third],
             "tiny-q8_0.gguf.c": whole[2 * third:]}
    hub.add_repo("test/Split-GGUF", parts)
    # Two pulls at once: the second must not join parts the first is deleting after its join.
    procs = [subprocess.Popen([*QWEN, "pull", "test/Split-GGUF"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert cdn_bytes(hub, "test/Split-GGUF", "tiny-q8_0.gguf.a") == third
    [model] = store.list_models()
    assert model.path.name == "tiny-q8_0.gguf" and model.size == len(whole)
    assert hashlib.sha256(model.path.read_bytes()).digest() == hashlib.sha256(whole).digest()
    # The parts were only a way to ship the file: once joined they are gone.
    blobs = [p.name for p in (repo_folder("test/Split-GGUF") / "blobs").iterdir()]
    assert blobs == [hashlib.sha256(whole).hexdigest()]
    answer = run_qwen("run", "test/Split-GGUF", "--temperature", "0", "hi", timeout=90)
    assert answer.returncode == 0, text(answer)
    assert answer.stdout == b"Hello world\n"


def test_run_pulls_on_first_use_then_starts_offline_with_no_request(hub, tiny_qwen3_gguf):
    hub.add_repo("test/Tiny3-GGUF", {"tiny3-q8_0.gguf": tiny_qwen3_gguf})
    first = run_qwen("run", "test/Tiny3-GGUF", "--no-think", "hi", timeout=90)
    assert first.returncode == 0, text(first)
    assert first.stdout == b"Answer\n"
    assert "pulled test/Tiny3-GGUF:q8_0" in first.stderr.decode()

    hub.reset_log()
    second = run_qwen("run", "test/Tiny3-GGUF", "--no-think", "hi", timeout=60)
    assert second.returncode == 0 and second.stdout == b"Answer\n"
    assert hub.log == []  # resolved from the cache: not even the listing
    offline = run_qwen("run", "test/Tiny3-GGUF:Q8_0", "--no-think", "hi", env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert offline.returncode == 0 and offline.stdout == b"Answer\n"
    assert hub.log == []


# -- resume -------------------------------------------------------------------------------------------

def test_dropped_connection_is_resumed_by_the_next_pull_with_only_the_rest(hub):
    data = add_blob_repo(hub)
    # The connection drops at 40 %; every retry of this process then gets a 503.
    hub.fault(f"{REPO}/{FILE}", Fault(drop_at=0.4, times=1), Fault(status=503))
    first = run_qwen("pull", REPO, timeout=60)
    assert first.returncode == 1
    assert "kept; run the same command again to resume" in first.stderr.decode(), text(first)
    assert b"Traceback" not in first.stderr
    assert installed() == []
    [partial] = partials()
    kept = partial.stat().st_size
    assert 0 < kept <= int(SIZE * 0.4)

    hub.faults.clear()
    hub.reset_log()
    second = run_qwen("pull", REPO, timeout=60)
    assert second.returncode == 0, text(second)
    assert cdn_bytes(hub) == SIZE - kept
    assert [r.range for r in hub.log if r.server == "cdn"] == [f"bytes={kept}-"]
    [model] = store.list_models()
    assert model.path.read_bytes() == data and partials() == []


def test_kill_9_mid_download_resumes_with_only_the_rest(hub):
    size = 8 << 20
    data = add_blob_repo(hub, size=size)
    hub.fault(f"{REPO}/{FILE}", rate=4 << 20)
    proc = subprocess.Popen([*QWEN, "pull", REPO], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (partials() and partials()[0].stat().st_size >= 2 << 20):
            assert time.monotonic() < deadline, "the download never started"
            assert proc.poll() is None, "the pull ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    [partial] = partials()
    kept = partial.stat().st_size
    assert kept < size and installed() == []

    hub.faults.clear()
    hub.reset_log()
    second = run_qwen("pull", REPO, timeout=60)
    assert second.returncode == 0, text(second)
    assert cdn_bytes(hub) == size - kept
    assert store.list_models()[0].path.read_bytes() == data


def test_one_dropped_connection_is_retried_in_the_same_pull(hub):
    data = add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", drop_at=0.5, times=1)
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 0, text(result)
    ranges = [r.range for r in hub.log if r.server == "cdn"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 2
    assert cdn_bytes(hub) <= SIZE  # what arrived before the drop was kept, not fetched twice
    assert store.list_models()[0].path.read_bytes() == data


def test_a_server_that_ignores_range_does_not_corrupt_the_file(hub):
    data = add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", Fault(drop_at=0.4, times=1), Fault(ignore_range=True))
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 0, text(result)
    assert [r.status for r in hub.log if r.server == "cdn"] == [200, 200]  # the retry got the whole file
    [model] = store.list_models()
    assert model.path.read_bytes() == data


def test_a_short_body_is_completed_not_installed_short(hub):
    data = add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", short_body=0.5, times=1)
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 0, text(result)
    assert store.list_models()[0].path.read_bytes() == data


# -- verification -------------------------------------------------------------------------------------

def test_a_flipped_byte_is_caught_deleted_and_never_installed(hub):
    add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", flip_byte=SIZE // 2)
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "checksum mismatch" in err and "deleted" in err, err
    assert b"Traceback" not in result.stderr
    assert installed() == [] and partials() == []
    assert [p for p in (repo_folder() / "blobs").iterdir() if p.stat().st_size >= SIZE] == []
    listed = run_qwen("list", "--json")
    assert json.loads(listed.stdout) == []


def test_two_pulls_at_once_end_with_one_good_copy(hub):
    data = add_blob_repo(hub)
    hub.fault(f"{REPO}/{FILE}", rate=8 << 20)  # half a second: long enough to overlap
    procs = [subprocess.Popen([*QWEN, "pull", REPO], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    [model] = store.list_models()
    assert model.path.read_bytes() == data
    assert cdn_bytes(hub) == SIZE  # the second waited for the first instead of downloading again
    assert sorted(p.name for p in (repo_folder() / "blobs").iterdir()) == sorted(
        [hashlib.sha256(data).hexdigest(), model.path.parent.joinpath("README.md").resolve().name])


def test_a_missing_model_card_does_not_fail_a_verified_pull(hub):
    data = add_blob_repo(hub)
    hub.fault("resolve", Fault(times=1), Fault(status=500))  # the weights' HEAD passes, the card's fails
    result = run_qwen("pull", REPO, timeout=60)
    assert result.returncode == 0, text(result)
    [model] = store.list_models()
    assert model.path.read_bytes() == data
    assert not (model.path.parent / "README.md").exists()


def test_offline_pull_of_a_downloaded_model_succeeds_without_a_request(hub):
    add_blob_repo(hub)
    assert run_qwen("pull", REPO, timeout=60).returncode == 0
    hub.reset_log()
    result = run_qwen("pull", REPO, env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert result.returncode == 0, text(result)
    assert "is downloaded" in result.stderr.decode() and "not checked for updates" in result.stderr.decode()
    assert hub.log == []


def test_ctrl_c_mid_pull_exits_130_and_keeps_the_bytes(hub):
    add_blob_repo(hub, size=8 << 20)
    hub.fault(f"{REPO}/{FILE}", rate=4 << 20)
    proc = subprocess.Popen([*QWEN, "pull", REPO], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (partials() and partials()[0].stat().st_size >= 1 << 20):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 130
    assert b"Traceback" not in err and f"run qwen pull {REPO} to resume".encode() in err
    assert partials() and store.list_models() == []


def test_hf_hub_cache_is_where_models_go(hub, tmp_path, monkeypatch):
    data = add_blob_repo(hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert run_qwen("pull", REPO, timeout=60).returncode == 0
    [model] = store.list_models()
    assert model.path.is_relative_to(tmp_path / "elsewhere") and model.path.read_bytes() == data
    assert json.loads(run_qwen("list", "--json").stdout)[0]["path"] == str(model.path)
