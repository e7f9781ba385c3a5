"""Backend choice: a table over (requested backend, model, hardware), with an injected probe; and
the real probe, which must not import torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qwencli.errors import BackendUnavailable, UnsupportedModel
from qwencli.hardware import GPU, Hardware
from qwencli.models.backend_route import FIT_CONTEXT, ModelFacts, choose, context_room
from tests.models import ROOT

GB = 10**9
NO_TORCH = Hardware()
CPU_TORCH = Hardware(torch_installed=True, transformers_installed=True, torch_version="2.13.0+cpu")
CUDA_BUILD = dict(torch_installed=True, transformers_installed=True, torch_version="2.13.0", torch_cuda="12.4")
BIG_GPU = Hardware(**CUDA_BUILD, gpus=(GPU(0, "RTX 4090", 24 * GB, 22 * GB),))
SMALL_GPU = Hardware(**CUDA_BUILD, gpus=(GPU(0, "GTX 1650", 4 * GB, 3 * GB),))
TWO_GPUS = Hardware(**CUDA_BUILD, gpus=(GPU(0, "small", 4 * GB, 1 * GB), GPU(1, "big", 80 * GB, 70 * GB)))
CUDA_BUILD_NO_GPU = Hardware(**CUDA_BUILD)
OFFLOAD = Hardware(llama_gpu_offload=True, metal=True)

BOTH_7B = ModelFacts("qwen2.5-7b", has_gguf=True, has_safetensors=True, torch_bytes=15 * GB)
BOTH_05B = ModelFacts("qwen2.5-0.5b", has_gguf=True, has_safetensors=True, torch_bytes=1 * GB)
GGUF_ONLY = ModelFacts("x.gguf", has_gguf=True, has_safetensors=False)
TORCH_ONLY = ModelFacts("qwen1.5-7b", has_gguf=False, has_safetensors=True, torch_bytes=15 * GB)
TORCH_FOLDER = ModelFacts("./folder", has_gguf=False, has_safetensors=True, torch_bytes=GB, downloaded=True)
UNKNOWN_SIZE = ModelFacts("o/r", has_gguf=True, has_safetensors=True)


@pytest.mark.parametrize("requested,facts,hw,backend,reason", [
    # auto: torch only with torch + CUDA + room on the GPU
    ("auto", BOTH_7B, BIG_GPU, "torch", "fits on RTX 4090"),
    ("auto", BOTH_7B, SMALL_GPU, "llama", "GTX 1650 has 3.0 GB free"),
    ("auto", BOTH_05B, SMALL_GPU, "torch", "fits on GTX 1650"),
    ("auto", BOTH_7B, TWO_GPUS, "torch", "fits on big"),
    ("auto", BOTH_7B, NO_TORCH, "llama", "torch is not installed"),
    ("auto", BOTH_7B, CPU_TORCH, "llama", "CPU-only build"),
    ("auto", BOTH_7B, CUDA_BUILD_NO_GPU, "llama", "no CUDA GPU"),
    ("auto", UNKNOWN_SIZE, BIG_GPU, "llama", "size is unknown"),
    ("auto", GGUF_ONLY, BIG_GPU, "llama", "only a GGUF build"),
    ("auto", TORCH_ONLY, BIG_GPU, "torch", "only a safetensors build"),
    ("auto", TORCH_FOLDER, CPU_TORCH, "torch", "on the CPU"),
    # explicit
    ("llama", BOTH_7B, BIG_GPU, "llama", "--backend llama"),
    ("torch", BOTH_7B, CPU_TORCH, "torch", "on CPU"),
    ("torch", BOTH_05B, BIG_GPU, "torch", "on CUDA"),
])
def test_choice_table(requested, facts, hw, backend, reason):
    choice = choose(requested, facts, hw)
    assert choice.backend == backend
    assert reason in choice.reason, choice.reason


def test_the_fit_leaves_room_for_the_context():
    # 2.5 GB of weights on a GPU with 3 GB free: the weights fit, weights + context do not.
    facts = ModelFacts("m", has_gguf=True, has_safetensors=True, torch_bytes=int(2.5 * GB))
    assert choose("auto", facts, SMALL_GPU).backend == "llama"
    # With a known (small) KV cache the estimate is exact and it fits.
    small_kv = ModelFacts("m", has_gguf=True, has_safetensors=True, torch_bytes=int(2.0 * GB), kv_bytes=100 << 20)
    assert context_room(small_kv) < context_room(facts)
    assert choose("auto", small_kv, SMALL_GPU).backend == "torch"
    assert FIT_CONTEXT >= 4096


def test_llama_reason_mentions_gpu_offload_when_the_build_has_it():
    assert "offloaded to the GPU" in choose("auto", BOTH_7B, OFFLOAD).reason


@pytest.mark.parametrize("requested,facts,hw,error,text", [
    ("llama", TORCH_ONLY, BIG_GPU, UnsupportedModel, "no GGUF build"),
    ("torch", GGUF_ONLY, BIG_GPU, UnsupportedModel, "no safetensors build"),
    ("torch", BOTH_7B, NO_TORCH, BackendUnavailable, "pip install 'qwencli[torch]'"),
    ("auto", TORCH_ONLY, NO_TORCH, BackendUnavailable, "pip install 'qwencli[torch]'"),
    ("auto", TORCH_ONLY, CPU_TORCH, UnsupportedModel, "--backend torch"),
])
def test_impossible_choices_say_what_to_do(requested, facts, hw, error, text):
    with pytest.raises(error) as caught:
        choose(requested, facts, hw)
    assert text in caught.value.message + " " + (caught.value.hint or "")


def test_the_probe_is_not_called_when_the_answer_does_not_depend_on_it():
    def probe():
        raise AssertionError("probed")

    assert choose("auto", GGUF_ONLY, probe).backend == "llama"
    assert choose("llama", BOTH_7B, probe).backend == "llama"
    calls = []
    choose("auto", BOTH_7B, lambda: calls.append(1) or BIG_GPU)
    assert calls == [1]


PROBE = """
import json, sys
from qwencli.hardware import probe_hardware
from qwencli.models.resolve import resolve
hw = probe_hardware()
resolve(sys.argv[1])
print(json.dumps({"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "installed": hw.torch_installed, "version": hw.torch_version}))
"""


def test_real_probe_and_a_gguf_resolve_do_not_import_torch(tiny_qwen2_gguf):
    out = subprocess.run([sys.executable, "-c", PROBE, str(tiny_qwen2_gguf)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["torch"] is False and seen["transformers"] is False
    try:
        import importlib.metadata as md

        assert seen["installed"] and seen["version"] == md.version("torch")
    except md.PackageNotFoundError:
        assert not seen["installed"]


@pytest.mark.parametrize("typed,repo", [
    ("qwen2.5-7b:awq", "Qwen/Qwen2.5-7B-Instruct-AWQ"),
    ("qwen2.5-7b:gptq-int4", "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4"),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct"),
])
def test_torch_builds_by_name_route_to_their_repos(typed, repo, isolated_home):
    from qwencli.errors import ModelNotFound
    from qwencli.models.names import parse
    from qwencli.models.resolve import route

    with pytest.raises(ModelNotFound) as caught:  # not downloaded, and a server/pull=False never fetches
        route(typed, parse(typed), backend="auto", pull=False, probe=lambda **_: BIG_GPU)
    assert "qwen pull --backend torch" in caught.value.hint
    from qwencli.models.catalog import torch_repo

    assert torch_repo(parse(typed)) == repo


def test_a_torch_build_by_name_on_a_cpu_machine_says_what_to_do(isolated_home):
    from qwencli.errors import QwenError
    from qwencli.models.names import parse
    from qwencli.models.resolve import route

    with pytest.raises(QwenError) as caught:
        route("qwen2.5-7b:awq", parse("qwen2.5-7b:awq"), backend="auto", pull=False, probe=lambda **_: CPU_TORCH)
    assert "--backend torch" in (caught.value.hint or "")


def test_without_downloading_the_gguf_that_is_here_is_used(hub, tiny_qwen2_gguf, isolated_home):
    """A server or `qwen show` never downloads: when torch would be chosen but only the GGUF is
    downloaded, the GGUF runs (and the reason says how to get the torch build)."""
    from qwencli.models.names import parse
    from qwencli.models.resolve import route
    from tests.processes import run_qwen

    hub.add_repo("Qwen/Qwen2.5-0.5B-Instruct-GGUF", {"qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_qwen2_gguf})
    pulled = run_qwen("pull", "qwen2.5-0.5b", timeout=60)
    assert pulled.returncode == 0, pulled.stderr.decode()
    routed, reason = route("qwen2.5-0.5b", parse("qwen2.5-0.5b"), backend="auto", pull=False,
                           probe=lambda **_: BIG_GPU)
    assert routed is None and "only the GGUF is downloaded" in reason
    assert "qwen pull --backend torch qwen2.5-0.5b" in reason


@pytest.mark.parametrize("hardware,ram,fits,where", [
    (BIG_GPU, 1 * GB, True, None),  # 14 GB of bf16 weights + context in a 22 GB-free GPU
    (Hardware(**CUDA_BUILD, gpus=(GPU(0, "RTX 3060", 12 * GB, 11 * GB),)), 64 * GB, False, "free GPU memory"),
    (CPU_TORCH, 64 * GB, True, None),  # no GPU: torch runs on the CPU, from RAM
    (CPU_TORCH, 8 * GB, False, "no CUDA GPU"),
])
def test_a_torch_pull_checks_the_memory_torch_would_run_in(monkeypatch, hardware, ram, fits, where):
    from qwencli.models import fit, pull_torch
    from qwencli.models.select import RepoFile

    monkeypatch.setattr(fit, "available_memory", lambda: ram)
    files = [RepoFile("config.json", 700), RepoFile("model-00001-of-00002.safetensors", 7 * GB),
             RepoFile("model-00002-of-00002.safetensors", 7 * GB)]
    if fits:
        pull_torch.check_memory("Qwen/Qwen2.5-7B-Instruct", files, lambda: hardware)
        return
    with pytest.raises(fit.ModelTooLarge, match=where) as caught:
        pull_torch.check_memory("Qwen/Qwen2.5-7B-Instruct", files, lambda: hardware)
    assert "--force" in caught.value.hint and "GGUF" in caught.value.hint
