"""`make download` (radioalign.download): what it fetches and where it puts it, offline."""

from __future__ import annotations

import sys
import types

from radioalign.tools import download


def test_prefetch_smoke_profile_prepares_everything_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path / "data"))
    download.prefetch("smoke")
    out = capsys.readouterr().out
    assert "MiraBest synthetic train" in out and "MiraBest synthetic test" in out
    assert (tmp_path / "data" / "synthetic_batches").is_dir()


def test_prefetch_model_puts_a_hub_model_in_the_models_folder(tmp_path, monkeypatch):
    calls = []
    fake_hub = types.SimpleNamespace(snapshot_download=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub)
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path / "models"))
    target = download.prefetch_model("google/siglip2-base-patch16-224")
    assert target == tmp_path / "models" / "siglip2-base-patch16-224"
    assert calls == [{"repo_id": "google/siglip2-base-patch16-224", "local_dir": target}]
    # load_siglip resolves a hub name to this folder, so the compute node needs no network.
    from radioalign.model import resolve_model_path

    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert resolve_model_path("google/siglip2-base-patch16-224") == str(target)


def test_prefetch_model_skips_local_and_tiny_models(tmp_path):
    assert download.prefetch_model("tiny") is None
    assert download.prefetch_model(str(tmp_path)) is None
