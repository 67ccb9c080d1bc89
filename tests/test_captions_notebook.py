"""notebooks/01_captioning.ipynb run headless with the gemini source against the fake server:
it works end to end and the key appears nowhere in what the run writes (stores, figures, executed notebook)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from radioalign.captions import read_records

sys.path.insert(0, str(Path(__file__).parent))
from fake_gemini import FakeGemini  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "fake-gemini-notebook-key-9876543210abcdef"


@pytest.mark.slow
def test_notebook_with_gemini_never_shows_the_key(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    server = FakeGemini()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.start())
    monkeypatch.setenv("GOOGLE_API_KEY", FAKE_KEY)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "01_captioning.ipynb"
    try:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "01_captioning.ipynb"),
            str(out),
            parameters={"profile": "smoke", "source": "gemini", "limit": 2, "token_model": "words"},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    finally:
        server.stop()
    assert len(server.generate_requests()) == 8  # 2 prompts x 2 splits x 2 images
    stores = sorted((tmp_path / "results" / "smoke" / "captions" / "gemini").glob("*.jsonl"))
    assert [p.name for p in stores] == ["control_test.jsonl", "control_train.jsonl", "curated_test.jsonl", "curated_train.jsonl"]
    assert all(r["status"] == "ok" and r["caption"].startswith("fake caption") for p in stores for r in read_records(p))
    assert (tmp_path / "results" / "smoke" / "figures" / "fig2.png").is_file()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert out in written
    for p in written:
        assert FAKE_KEY.encode() not in p.read_bytes(), f"the key leaked into {p}"
