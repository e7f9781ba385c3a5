"""Pulling today's Qwen by name from the repos people really use: community GGUF sources tried in the
catalog's order, their layouts (UD quants, per-quant shard folders) and sidecars (mmproj, MTP) that a
text-only pull never transfers. Real CLI subprocesses against the loopback hub (tests/fixtures/hub.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qwencli.models import store
from tests.fixtures.hub import random_bytes
from tests.processes import run_qwen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def text(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode() + result.stdout.decode()


def installed() -> list[tuple[str, str]]:
    return [(m.name, m.repo) for m in store.list_models()]


def transferred(hub) -> dict[str, int]:
    """Bytes the CDN sent, per file path (repo/path)."""
    sent: dict[str, int] = {}
    for request in hub.log:
        if request.server == "cdn" and request.bytes_sent:
            key = request.path.removeprefix("/lfs/")
            sent[key] = sent.get(key, 0) + request.bytes_sent
    return sent


def unsloth_27b(weights: Path | bytes) -> dict[str, Path | bytes]:
    """unsloth's layout: plain quants, a UD quant, BF16 shards in a folder, projectors, an MTP draft."""
    return {
        "Qwen3.6-27B-Q4_K_M.gguf": weights,
        "Qwen3.6-27B-UD-Q4_K_XL.gguf": random_bytes(3100, 1),
        "Qwen3.6-27B-Q8_0.gguf": random_bytes(5000, 2),
        "BF16/Qwen3.6-27B-BF16-00001-of-00002.gguf": random_bytes(4000, 3),
        "BF16/Qwen3.6-27B-BF16-00002-of-00002.gguf": random_bytes(4000, 4),
        "mmproj-BF16.gguf": random_bytes(2000, 5),
        "mmproj-F16.gguf": random_bytes(2000, 6),
        "MTP/mtp-Qwen3.6-27B-Q4_0.gguf": random_bytes(1500, 7),
        "README.md": b"---\nlicense: apache-2.0\n---\n# Qwen3.6-27B GGUF\n",
    }


def test_a_community_gguf_is_pulled_by_name_from_the_preferred_source_with_the_default_quant(
    hub, tiny_qwen3_gguf
):
    # ggml-org (preferred) has only Q8_0; the default Q4_K_M comes from unsloth, the next in line.
    hub.add_repo("ggml-org/Qwen3.6-27B-GGUF", {"Qwen3.6-27B-Q8_0.gguf": random_bytes(5000, 9)})
    hub.add_repo("unsloth/Qwen3.6-27B-GGUF", unsloth_27b(tiny_qwen3_gguf))
    hub.add_repo("bartowski/Qwen_Qwen3.6-27B-GGUF", {"Qwen_Qwen3.6-27B-Q4_K_M.gguf": random_bytes(3000, 8)})

    # --no-vision: the stand-in weights are a text model, and the repo's projectors random bytes.
    result = run_qwen("pull", "qwen3.6-27b", "--no-vision", timeout=90)
    assert result.returncode == 0, text(result)
    assert installed() == [("qwen3.6-27b:q4_k_m", "unsloth/Qwen3.6-27B-GGUF")]
    assert "from unsloth/Qwen3.6-27B-GGUF (a community GGUF, not Qwen's own)" in result.stderr.decode()
    # Exactly the one weights file crossed the wire (and the card): no projector, no MTP head, no other quant.
    sent = transferred(hub)
    assert sent == {"unsloth/Qwen3.6-27B-GGUF/Qwen3.6-27B-Q4_K_M.gguf": tiny_qwen3_gguf.stat().st_size}

    # Once cached, the name resolves with no network at all, and qwen show says whose files they are.
    hub.reset_log()
    offline = {"HF_HUB_OFFLINE": "1"}
    answer = run_qwen("run", "qwen3.6-27b", "--no-think", "hi", env=offline, timeout=60)
    assert answer.returncode == 0, text(answer)
    assert answer.stdout == b"Answer\n"
    shown = run_qwen("show", "qwen3.6:27b", env=offline).stdout.decode()
    assert "source          a community GGUF by unsloth, not Qwen's own (converted from Qwen/Qwen3.6-27B)" in shown
    # The dialect shown is the one the file's own template teaches (this stand-in carries Qwen3's).
    assert "tool calls      yes, Hermes JSON in <tool_call>" in shown
    assert hub.log == []


def test_a_named_quant_and_a_ud_quant_come_from_the_source_that_has_them(hub):
    hub.add_repo("ggml-org/Qwen3.6-27B-GGUF", {"Qwen3.6-27B-Q8_0.gguf": random_bytes(5000, 9)})
    hub.add_repo("unsloth/Qwen3.6-27B-GGUF", unsloth_27b(random_bytes(3000, 10)))

    q8 = run_qwen("pull", "qwen3.6-27b:Q8_0", timeout=60)
    assert q8.returncode == 0, text(q8)
    ud = run_qwen("pull", "qwen3.6-27b:UD-Q4_K_XL", timeout=60)
    assert ud.returncode == 0, text(ud)
    bf16 = run_qwen("pull", "qwen3.6-27b", "--quant", "bf16", timeout=60)
    assert bf16.returncode == 0, text(bf16)
    assert sorted(installed()) == [
        ("qwen3.6-27b:bf16", "unsloth/Qwen3.6-27B-GGUF"),
        ("qwen3.6-27b:q8_0", "ggml-org/Qwen3.6-27B-GGUF"),  # the preferred source has this one
        ("qwen3.6-27b:ud_q4_k_xl", "unsloth/Qwen3.6-27B-GGUF"),
    ]
    # A vision model: unsloth's F16 projector (not BF16) comes with its quants, once for both; the
    # ggml-org repo has none, which the pull says.
    assert "(text only: ggml-org/Qwen3.6-27B-GGUF carries no vision projector)" in q8.stderr.decode()
    assert sorted(transferred(hub)) == [
        "ggml-org/Qwen3.6-27B-GGUF/Qwen3.6-27B-Q8_0.gguf",
        "unsloth/Qwen3.6-27B-GGUF/BF16/Qwen3.6-27B-BF16-00001-of-00002.gguf",
        "unsloth/Qwen3.6-27B-GGUF/BF16/Qwen3.6-27B-BF16-00002-of-00002.gguf",
        "unsloth/Qwen3.6-27B-GGUF/Qwen3.6-27B-UD-Q4_K_XL.gguf",
        "unsloth/Qwen3.6-27B-GGUF/mmproj-F16.gguf",
    ]
    assert transferred(hub)["unsloth/Qwen3.6-27B-GGUF/mmproj-F16.gguf"] == 2000


def test_a_missing_source_is_skipped_and_a_quant_no_source_has_is_a_clear_error(hub):
    # No ggml-org repo on this hub: the 0.8B default (Q8_0) comes from unsloth.
    hub.add_repo("unsloth/Qwen3.5-0.8B-GGUF", {"Qwen3.5-0.8B-Q8_0.gguf": random_bytes(2000, 1),
                                               "Qwen3.5-0.8B-Q4_K_M.gguf": random_bytes(1000, 2),
                                               "mmproj-F16.gguf": random_bytes(900, 3)})
    result = run_qwen("pull", "qwen3.5-0.8b", timeout=60)
    assert result.returncode == 0, text(result)
    assert installed() == [("qwen3.5-0.8b:q8_0", "unsloth/Qwen3.5-0.8B-GGUF")]

    hub.reset_log()
    missing = run_qwen("pull", "qwen3.5:0.8b-q5_k_s", timeout=60)
    assert missing.returncode == 1
    err = missing.stderr.decode()
    assert "no source of qwen3.5-0.8b has a q5_k_s GGUF" in err and "Traceback" not in err
    assert "unsloth/Qwen3.5-0.8B-GGUF: q4_k_m, q8_0" in err  # what there is, per source
    assert transferred(hub) == {}


def test_qwen_own_gguf_shard_folders_and_quant_auto(hub):
    repo = "Qwen/Qwen3-Next-80B-A3B-Instruct-GGUF"
    files: dict[str, Path | bytes] = {}
    for i, quant in enumerate(("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")):
        for n in (1, 2):
            files[f"{quant}/Qwen3-Next-80B-A3B-Instruct-{quant}-0000{n}-of-00002.gguf"] = random_bytes(
                1000 * (i + 1), 10 * i + n)
    files.update({f"BF16/Qwen3-Next-80B-A3B-Instruct-BF16-0000{n}-of-00004.gguf": random_bytes(9000, 50 + n)
                  for n in (1, 2, 3, 4)})
    hub.add_repo(repo, files)
    result = run_qwen("pull", "qwen3-next-80b-a3b-instruct", "--quant", "auto", timeout=60)
    assert result.returncode == 0, text(result)
    # With room for all, auto takes the largest standard quant (BF16 is not one), as a whole shard set.
    assert installed() == [("qwen3-next-80b-a3b-instruct:q8_0", repo)]
    assert sorted(transferred(hub)) == [f"{repo}/Q8_0/Qwen3-Next-80B-A3B-Instruct-Q8_0-0000{n}-of-00002.gguf"
                                        for n in (1, 2)]
    assert "community" not in result.stderr.decode()  # Qwen's own files


def test_ollama_tags_of_the_new_families_pull_the_same_files(hub):
    hub.add_repo("Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF",
                 {"Qwen3-Coder-30B-A3B-Instruct-Q4_K_M.gguf": random_bytes(2000, 1),
                  "Qwen3-Coder-30B-A3B-Instruct-Q8_0.gguf": random_bytes(3000, 2)})
    hub.add_repo("unsloth/Qwen3.5-9B-GGUF", {"Qwen3.5-9B-Q4_K_M.gguf": random_bytes(1500, 3),
                                             "Qwen3.5-9B-UD-Q4_K_XL.gguf": random_bytes(1600, 4)})
    for typed in ("qwen3-coder:30b", "qwen3-coder-30b-a3b", "qwen3.5:9b"):
        result = run_qwen("pull", typed, timeout=60)
        assert result.returncode == 0, (typed, text(result))
    assert sorted(installed()) == [("qwen3-coder-30b-a3b:q4_k_m", "Qwen/Qwen3-Coder-30B-A3B-Instruct-GGUF"),
                                   ("qwen3.5-9b:q4_k_m", "unsloth/Qwen3.5-9B-GGUF")]
