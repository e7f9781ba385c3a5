"""`qwen doctor`: the report with an injected probe (CUDA or not), and the real command's output."""

from __future__ import annotations

import json

from qwencli.diagnose import gather, render
from qwencli.hardware import GPU, TORCH_INSTALL, Hardware
from tests.processes import run_qwen

GB = 10**9
CUDA = Hardware(torch_installed=True, transformers_installed=True, torch_version="2.13.0", torch_cuda="12.4",
                gpus=(GPU(0, "RTX 4090", 24 * GB, 20 * GB),))


def _backends(report):
    return {b["model"].split(" (")[0]: b for b in report["backends"]}


def test_report_with_a_big_cuda_gpu_runs_safetensors_on_torch():
    report = gather(CUDA)
    chosen = _backends(report)
    assert chosen["qwen2.5-7b"]["backend"] == "torch" and "RTX 4090" in chosen["qwen2.5-7b"]["reason"]
    assert chosen["qwen1.5-moe-a2.7b"]["backend"] == "torch"
    assert chosen["a .gguf file"]["backend"] == "llama"
    assert chosen["a Hugging Face folder"]["backend"] == "torch"
    assert report["gpu"]["cuda_devices"][0]["free_bytes"] == 20 * GB
    text = render(report)
    assert "cuda:0    RTX 4090" in text and "qwen2.5-7b (GGUF and safetensors)" in text


def test_report_without_torch_says_how_to_install_it():
    report = gather(Hardware())
    chosen = _backends(report)
    assert chosen["qwen2.5-7b"]["backend"] == "llama" and "torch is not installed" in chosen["qwen2.5-7b"]["reason"]
    assert chosen["qwen1.5-moe-a2.7b"]["backend"] is None and chosen["qwen1.5-moe-a2.7b"]["hint"] == TORCH_INSTALL
    assert {"for": "the torch backend (safetensors models, CUDA GPUs)", "command": TORCH_INSTALL} in report["install"]
    assert TORCH_INSTALL in render(report)


def test_doctor_command_and_json():
    out = run_qwen("doctor", timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    for heading in ("system", "gpu", "packages", "backends (--backend auto)"):
        assert f"\n{heading}" in f"\n{text}"
    assert "llama-cpp-python" in text
    js = run_qwen("doctor", "--json", timeout=60)
    assert js.returncode == 0, js.stderr.decode()
    report = json.loads(js.stdout)
    assert set(report) >= {"system", "gpu", "packages", "llama_cpp", "backends", "install"}
    assert report["system"]["memory"]["total_bytes"] > 0
    assert report["llama_cpp"]["installed"] is True and isinstance(report["llama_cpp"]["gpu_offload"], bool)
    assert all(b["backend"] in ("llama", "torch", None) and b["reason"] for b in report["backends"])


def test_engines_section_shows_the_vllm_command_for_the_gpus_here():
    eight = Hardware(torch_installed=True, transformers_installed=True, torch_cuda="12.4",
                     gpus=tuple(GPU(i, "H100", 80 << 30, 79 << 30) for i in range(8)))
    report = gather(eight)["engines"]
    assert report["gpus"] == 8
    assert report["command"].splitlines()[-1].startswith(
        "vllm serve Qwen/Qwen3.6-35B-A3B --tensor-parallel-size 8 --max-model-len 262144 --reasoning-parser qwen3")
    assert set(report["installed"]) == {"vllm", "sglang"}
    text = render(gather(eight))
    assert "qwen3.6-35b-a3b would run:" in text


def test_engines_section_without_a_gpu_says_why():
    report = gather(Hardware())["engines"]
    assert report["command"] is None and "CUDA GPU" in report["reason"]
    assert report["install"]["vllm"] == "pip install 'qwencli[vllm]'"  # vLLM is never installed here
