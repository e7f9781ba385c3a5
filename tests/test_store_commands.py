"""`qwen list`, `qwen show`, `qwen rm`: the local store (the Hugging Face cache), no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from qwencli.models import store
from tests.fixtures.hub import random_bytes
from tests.models import ROOT
from tests.processes import QWEN, run_qwen
from tests.test_pull_e2e import repo_folder, text
from tests.test_pull_errors import closed_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TINY = "test/Tiny-GGUF"
CARD = b"---\nlicense: mit\ntags: [gguf]\n---\n# Tiny\n"


def pull(*names: str) -> None:
    for name in names:
        result = run_qwen("pull", name, timeout=90)
        assert result.returncode == 0, text(result)


@pytest.fixture
def tiny_pulled(hub, tiny_qwen2_gguf):
    """The tiny Qwen2 GGUF, pulled from the loopback hub; afterwards the hub is out of reach."""
    hub.add_repo(TINY, {"tiny-q8_0.gguf": tiny_qwen2_gguf, "README.md": CARD})
    pull(TINY)
    hub.reset_log()
    yield hub
    assert hub.log == []  # list/show/rm never touch the network


def no_network() -> dict:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}


def test_list_shows_a_table_with_a_total_and_json(hub):
    hub.add_repo("test/A-GGUF", {"a-q8_0.gguf": random_bytes(3000, 1), "a-q4_0.gguf": random_bytes(2000, 2)})
    hub.add_repo("test/B-GGUF", {"b-Q4_K_M.gguf": random_bytes(1000, 3)})
    pull("test/A-GGUF:q8_0", "test/A-GGUF:q4_0", "test/B-GGUF")
    hub.reset_log()
    result = run_qwen("list", env=no_network())
    assert result.returncode == 0 and result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "REPO", "QUANT", "SIZE", "MODIFIED", "FORMAT"]
    rows = [line.split() for line in lines[1:-1]]
    assert [r[:4] for r in rows] == [["test/A-GGUF:q4_0", "test/A-GGUF", "q4_0", "2.0"],
                                     ["test/A-GGUF:q8_0", "test/A-GGUF", "q8_0", "3.0"],
                                     ["test/B-GGUF:q4_k_m", "test/B-GGUF", "q4_k_m", "1.0"]]
    assert all(r[-1] == "gguf" and "just now" in line for r, line in zip(rows, lines[1:-1]))
    assert lines[-1] == "3 models, 6.0 KB on disk"

    records = json.loads(run_qwen("list", "--json").stdout)
    assert [(r["name"], r["size"], r["format"]) for r in records] == [
        ("test/A-GGUF:q4_0", 2000, "gguf"), ("test/A-GGUF:q8_0", 3000, "gguf"), ("test/B-GGUF:q4_k_m", 1000, "gguf")]
    assert all(os.path.isfile(r["path"]) and len(r["commit"]) == 40 for r in records)
    assert run_qwen("ls").stdout == result.stdout
    assert hub.log == []


def test_list_on_an_empty_store_says_how_to_get_a_model():
    result = run_qwen("list")
    assert result.returncode == 0 and result.stdout == b""
    assert "qwen pull" in result.stderr.decode()
    assert json.loads(run_qwen("list", "--json").stdout) == []


def test_models_other_hf_tools_downloaded_show_up(hub):
    """huggingface_hub's own snapshot_download fills the same cache: a safetensors repo and a GGUF repo."""
    config = {"architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
    hub.add_repo("other/Tool-Model", {"config.json": json.dumps(config).encode(),
                                      "model.safetensors": random_bytes(5000, 1), "README.md": CARD})
    hub.add_repo("other/Tool-GGUF", {"tool-Q5_K_M.gguf": random_bytes(4000, 2)})
    script = textwrap.dedent("""
        import sys
        from huggingface_hub import snapshot_download
        for repo in sys.argv[1:]:
            snapshot_download(repo)
    """)
    done = subprocess.run([sys.executable, "-c", script, "other/Tool-Model", "other/Tool-GGUF"],
                          capture_output=True, timeout=60, env=os.environ)
    assert done.returncode == 0, done.stderr.decode()
    records = {r["name"]: r for r in json.loads(run_qwen("list", "--json").stdout)}
    assert set(records) == {"other/Tool-Model", "other/Tool-GGUF:q5_k_m"}
    model = records["other/Tool-Model"]
    assert (model["format"], model["quant"]) == ("safetensors", "bfloat16")
    assert model["size"] == 5000 + len(json.dumps(config)) + len(CARD)
    shown = run_qwen("show", "other/Tool-Model", env=no_network())
    assert shown.returncode == 0, text(shown)
    out = shown.stdout.decode()
    assert "Qwen2ForCausalLM" in out and "4096" in out and "license         mit" in out


def test_show_reads_the_gguf_header_and_the_card_without_network(tiny_pulled):
    result = run_qwen("show", TINY, env=no_network())
    assert result.returncode == 0, text(result)
    out = result.stdout.decode()
    facts = dict(line.split(None, 1) for line in out.splitlines()[:8] if " " in line.strip())
    assert facts["name"].strip() == f"{TINY}:q8_0"
    assert facts["architecture"].strip() == "qwen2"
    assert out.count("context length  32768") == 1
    assert "parameters      19.52M" in out and "quantization    F16" in out
    assert "license         mit" in out
    assert "tiny-q8_0.gguf -> " in out and "/blobs/" in out
    assert re.search(r"^backend +.*llama\.cpp", out, re.M)  # the choice `qwen run` would make, and why
    head = out.split("chat template\n", 1)[1].splitlines()
    assert head[0].strip() == "{%- if tools %}"
    assert head[-1].startswith("  … ") and "--template shows all" in head[-1]

    full = run_qwen("show", f"{TINY}:Q8_0", "--template", env=no_network()).stdout.decode()
    template = full.split("chat template\n", 1)[1]
    assert "<|im_start|>" in template and "add_generation_prompt" in template
    assert len(template.splitlines()) > len(head)


def test_show_of_a_model_that_is_not_downloaded_says_what_a_pull_would_fetch(hub):
    result = run_qwen("show", "qwen2.5-7b")
    assert result.returncode == 0, text(result)
    out = result.stdout.decode()
    assert "downloaded      no (qwen pull qwen2.5-7b)" in out
    assert "source          Qwen/Qwen2.5-7B-Instruct-GGUF: Qwen's own files" in out
    assert hub.log == []
    # Qwen publishes no GGUF of 3.6: the community source is named as such, with the others in order.
    out = run_qwen("show", "qwen3.6-27b").stdout.decode()
    assert "source          unsloth/Qwen3.6-27B-GGUF: a community GGUF by unsloth, not Qwen's own" in out
    assert "context length  262144" in out and "Qwen3-Coder XML" in out
    assert out.index("ggml-org/Qwen3.6-27B-GGUF") < out.index("unsloth/Qwen3.6-27B-GGUF (community)")
    # An embedding or rerank model says what it is for before anyone tries to chat with it.
    assert "for             reranking (/v1/rerank), not chat" in run_qwen("show", "qwen3-reranker-0.6b").stdout.decode()
    assert "for             embeddings (qwen embed" in run_qwen("show", "qwen3-embedding:0.6b").stdout.decode()
    assert not any(line.startswith("for ") for line in out.splitlines())  # a chat model has no such row
    # Not a catalog name: still a clear error, no traceback.
    result = run_qwen("show", "someone/Nothing-GGUF")
    assert result.returncode == 1
    assert "not downloaded" in result.stderr.decode() and "Traceback" not in result.stderr.decode()
    assert hub.log == []


def test_rm_deletes_exactly_that_model_and_keeps_a_shared_blob(hub):
    same = random_bytes(3000, 7)
    hub.add_repo("test/Share-GGUF", {"s-q8_0.gguf": same, "s-q4_0.gguf": same, "s-q2_k.gguf": random_bytes(1000, 8)})
    hub.add_repo("test/Keep-GGUF", {"k-q8_0.gguf": random_bytes(2000, 9)})
    pull("test/Share-GGUF:q8_0", "test/Share-GGUF:q4_0", "test/Share-GGUF:q2_k", "test/Keep-GGUF")
    blobs = repo_folder("test/Share-GGUF") / "blobs"
    assert len(list(blobs.iterdir())) == 2  # the two identical quants share one blob

    result = run_qwen("rm", "test/Share-GGUF:q8_0", "-y")
    assert result.returncode == 0, text(result)
    assert "deleted test/Share-GGUF:q8_0 (0 B freed)" in result.stderr.decode()
    names = [m.name for m in store.list_models()]
    assert names == ["test/Keep-GGUF:q8_0", "test/Share-GGUF:q2_k", "test/Share-GGUF:q4_0"]
    shared = next(m for m in store.list_models() if m.name == "test/Share-GGUF:q4_0")
    assert shared.path.read_bytes() == same

    result = run_qwen("rm", "test/Share-GGUF:q4_0", "test/Share-GGUF:q2_k", "-y")
    assert result.returncode == 0, text(result)
    assert "(3.0 KB freed)" in result.stderr.decode() and "(1.0 KB freed)" in result.stderr.decode()
    assert not repo_folder("test/Share-GGUF").exists()  # nothing left of it
    assert [m.name for m in store.list_models()] == ["test/Keep-GGUF:q8_0"]
    assert store.list_models()[0].path.read_bytes() == random_bytes(2000, 9)


def test_rm_with_an_ambiguous_or_unknown_name_deletes_nothing(hub):
    hub.add_repo("test/Two-GGUF", {"t-q8_0.gguf": random_bytes(2000, 1), "t-q4_0.gguf": random_bytes(1000, 2)})
    pull("test/Two-GGUF:q8_0", "test/Two-GGUF:q4_0")
    for args, status, message in [
        (("test/Two-GGUF",), 2, "matches 2 downloaded models"),
        (("test/Two-GGUF:q5_k_m",), 1, "not downloaded"),
        (("qwen2.5-7b",), 1, "not downloaded"),
        (("nobody/Nothing",), 1, "not downloaded"),
        (("test/Two-GGUF:q8_0", "nobody/Nothing"), 1, "not downloaded"),  # all or nothing
        (("../x",), 2, "is a path"),
        (("qwne2.5-7b",), 1, "did you mean"),
    ]:
        result = run_qwen("rm", "-y", *args)
        assert result.returncode == status, (args, text(result))
        assert message in result.stderr.decode(), (args, text(result))
    assert len(store.list_models()) == 2


def test_rm_asks_on_a_terminal(tiny_pulled):
    pexpect = pytest.importorskip("pexpect")
    for answer, status, left in (("n", 1, 1), ("y", 0, 0)):
        child = pexpect.spawn(QWEN[0], [*QWEN[1:], "rm", TINY], cwd=str(ROOT), env=dict(os.environ), timeout=30)
        child.expect(r"Delete test/Tiny-GGUF:q8_0 \(45\.0 MB\)\? \[y/N\]")
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == status
        assert len(store.list_models()) == left
