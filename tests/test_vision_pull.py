"""A vision model pulled by name: the weights and their projector from one repo, verified and made
visible together; `--no-vision` leaves the projector on the hub; `list`/`show` show the pair,
`rm` deletes both, and `qwen run NAME --image` then works offline. Real CLI subprocesses against
the loopback hub (tests/fixtures/hub.py) holding the tiny Qwen3-VL and its real projector."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from qwencli.models import store
from tests.fixtures.hub import random_bytes
from tests.models import build_vision, require
from tests.processes import run_qwen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = "Qwen/Qwen3-VL-2B-Instruct-GGUF"
MODEL = "Qwen3VL-2B-Instruct-Q4_K_M.gguf"
PROJECTOR = "mmproj-Qwen3VL-2B-Instruct-F32.gguf"
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def text(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode() + result.stdout.decode()


def transferred(hub) -> dict[str, int]:
    sent: dict[str, int] = {}
    for request in hub.log:
        if request.server == "cdn" and request.bytes_sent:
            key = request.path.removeprefix("/lfs/").removeprefix(REPO + "/")
            sent[key] = sent.get(key, 0) + request.bytes_sent
    return sent


@pytest.fixture(scope="module")
def vision() -> tuple[Path, Path]:
    from tests.models import QWEN_TOKENIZER

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return build_vision("gguf", tokenizer), build_vision("mmproj", tokenizer)


@pytest.fixture
def vl_hub(hub, vision):
    model, projector = vision
    hub.add_repo(REPO, {
        MODEL: model,
        "Qwen3VL-2B-Instruct-Q8_0.gguf": random_bytes(4000, 1),
        PROJECTOR: projector,
        # A quantized projector is the last choice: never pulled while a float one is there.
        "mmproj-Qwen3VL-2B-Instruct-Q8_0.gguf": random_bytes(3000, 2),
    })
    return hub


@pytest.fixture(scope="module")
def red_png(tmp_path_factory) -> Path:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "PNG")
    path = tmp_path_factory.mktemp("images") / "red.png"
    path.write_bytes(out.getvalue())
    return path


def run_json(*args, env=None) -> dict:
    result = run_qwen("run", *args, "-n", "8", "--temperature", "0", "--json", env=env)
    assert result.returncode == 0, text(result)
    return json.loads(result.stdout)


def test_a_vl_model_is_pulled_with_its_projector_and_runs_images_offline(vl_hub, vision, red_png):
    model, projector = vision
    pulled = run_qwen("pull", "qwen3-vl-2b", timeout=120)
    assert pulled.returncode == 0, text(pulled)
    assert f"with its vision projector {PROJECTOR}" in pulled.stderr.decode()
    # Exactly the two files crossed the wire, each whole: no other quant, no quantized projector.
    assert transferred(vl_hub) == {MODEL: model.stat().st_size, PROJECTOR: projector.stat().st_size}
    [local] = store.list_models()
    assert (local.name, local.path.name, local.projector and local.projector.name) == (
        "qwen3-vl-2b:q4_k_m", MODEL, PROJECTOR)
    assert local.projector.parent == local.path.parent  # one snapshot: found beside the model too
    assert local.projector.resolve().read_bytes() == projector.read_bytes()  # verified bytes
    assert local.size == model.stat().st_size + projector.stat().st_size

    vl_hub.reset_log()
    listed = run_qwen("list", env=OFFLINE).stdout.decode().splitlines()
    assert listed[0].split()[-1] == "CAPABILITIES"
    assert listed[1].split()[0] == "qwen3-vl-2b:q4_k_m" and listed[1].endswith("vision, tools")
    [record] = json.loads(run_qwen("list", "--json", env=OFFLINE).stdout)
    assert Path(record["projector"]).name == PROJECTOR
    shown = run_qwen("show", "qwen3-vl-2b", env=OFFLINE).stdout.decode()
    assert f"vision          yes, projector {PROJECTOR} (qwen3vl_merger)" in shown
    assert "capabilities    vision, tools" in shown  # the Instruct template: tools, no <think>
    assert f"/{PROJECTOR} -> " in shown  # listed among the files

    # By name, offline: the pulled projector is found, and the answer is the path run's, token for token.
    by_name = run_json("qwen3-vl-2b", "--image", red_png, "What is this?", env=OFFLINE)
    by_path = run_json(model, "--mmproj", projector, "--image", red_png, "What is this?")
    assert by_name["text"] == by_path["text"]
    assert by_name["usage"] == by_path["usage"]
    text_only = run_json("qwen3-vl-2b", "What is this?", env=OFFLINE)
    assert by_name["usage"]["prompt_tokens"] > text_only["usage"]["prompt_tokens"] + 10  # the image's tokens
    assert vl_hub.log == []

    removed = run_qwen("rm", "qwen3-vl-2b", "-y", env=OFFLINE)
    assert removed.returncode == 0, text(removed)
    assert store.list_models() == []
    assert not local.projector.exists() and not local.projector.resolve().exists()


def test_no_vision_pulls_the_weights_alone_and_a_later_pull_adds_the_projector(vl_hub, vision, red_png):
    model, projector = vision
    pulled = run_qwen("pull", "qwen3-vl:2b", "--no-vision", timeout=120)
    assert pulled.returncode == 0, text(pulled)
    assert transferred(vl_hub) == {MODEL: model.stat().st_size}
    [local] = store.list_models()
    assert local.projector is None
    listed = run_qwen("list", env=OFFLINE).stdout.decode().splitlines()
    assert listed[1].endswith(" tools")  # no vision without the projector
    refused = run_qwen("run", "qwen3-vl-2b", "--image", red_png, "hi", "-n", "1", env=OFFLINE)
    assert refused.returncode != 0 and "without a vision projector" in refused.stderr.decode()
    assert "Traceback" not in refused.stderr.decode()

    # Pulling again with vision fetches only what is missing: the projector.
    vl_hub.reset_log()
    again = run_qwen("pull", "qwen3-vl-2b", timeout=120)
    assert again.returncode == 0, text(again)
    assert transferred(vl_hub) == {PROJECTOR: projector.stat().st_size}
    [local] = store.list_models()
    assert local.projector is not None and local.projector.name == PROJECTOR
    assert run_json("qwen3-vl-2b", "--image", red_png, "hi", env=OFFLINE)["usage"]["completion_tokens"] == 8


def test_a_projector_two_quants_share_stays_until_the_last_one_goes(vl_hub, vision):
    pulled = run_qwen("pull", "qwen3-vl-2b", timeout=120)
    assert pulled.returncode == 0, text(pulled)
    q8 = run_qwen("pull", "qwen3-vl-2b:q8_0", timeout=120)
    assert q8.returncode == 0, text(q8)
    models = store.list_models()
    assert [m.name for m in models] == ["qwen3-vl-2b:q4_k_m", "qwen3-vl-2b:q8_0"]
    assert len({m.projector for m in models}) == 1 and models[0].projector is not None
    projector = models[0].projector
    assert run_qwen("rm", "qwen3-vl-2b:q8_0", "-y").returncode == 0
    assert projector.exists() and store.list_models()[0].projector == projector
    assert run_qwen("rm", "qwen3-vl-2b:q4_k_m", "-y").returncode == 0
    assert store.list_models() == [] and not projector.exists()


def test_run_by_name_pulls_model_and_projector_and_answers(vl_hub, vision, red_png):
    # The acceptance path: nothing downloaded, one command.
    model, projector = vision
    answer = run_json("qwen3-vl-2b", "--image", red_png, "What is in this picture?")
    assert transferred(vl_hub) == {MODEL: model.stat().st_size, PROJECTOR: projector.stat().st_size}
    by_path = run_json(model, "--mmproj", projector, "--image", red_png, "What is in this picture?")
    assert answer["text"] == by_path["text"] and answer["usage"] == by_path["usage"]
