"""Every environment variable qwencli reads is documented in the README, and read at call time."""

from __future__ import annotations

from qwencli import settings
from tests.models import ROOT


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Environment", 1)[1].split("\n## ", 1)[0]
    documented = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| `")}
    expected = {" / ".join(f"`{part}`" for part in name.split(" / ")) for name in settings.VARIABLES}
    assert documented == expected


def test_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("QWEN_BACKEND", " Torch ")
    monkeypatch.setenv("QWEN_HOST", "http://gpu-box:7936")
    monkeypatch.delenv("QWEN_DASHSCOPE_BASE_URL", raising=False)
    loaded = settings.load()
    assert loaded.backend == "torch" and loaded.host == "http://gpu-box:7936"
    assert loaded.dashscope_base_url == settings.DASHSCOPE_INTL
