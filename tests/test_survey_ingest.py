"""The ingest stages of radioalign.survey in-process (tiny SigLIP, no workers): walking the
inputs, reading that never raises, duplicates, resuming and retrying failures."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from astropy.io import fits  # noqa: E402

from radioalign.survey import ingest as I  # noqa: E402
from radioalign.survey.encoder import load_encoder  # noqa: E402
from radioalign.survey.store import ERRORS, SOURCES, Store  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tiny_siglip_dir, one_thread):
    return load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")


def write_cutout(path, seed=0, nan=False):
    rng = np.random.default_rng(seed)
    data = np.full((60, 60), np.nan) if nan else rng.normal(0, 1, (60, 60))
    if not nan:
        data[20:30, 25:40] += 25
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path, overwrite=True)
    return path


def test_iter_paths_walks_folders_expands_globs_and_keeps_missing_paths(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ["a/x.fits", "a/b/y.fits", "a/.z.fits", "a/.hidden/w.fits", "a/b/c.png"]:
        (tmp_path / name).write_bytes(b"")
    walked = [p.relative_to(tmp_path).as_posix() for p in I.iter_paths([tmp_path / "a"])]
    assert walked == ["a/x.fits", "a/b/c.png", "a/b/y.fits"]  # a folder's files, then its sub-folders, sorted
    globbed = [p.name for p in I.iter_paths([str(tmp_path / "a" / "**" / "*.fits")])]
    assert sorted(globbed) == ["x.fits", "y.fits"]
    assert [p.name for p in I.iter_paths([tmp_path / "missing.fits"])] == ["missing.fits"]


def test_read_task_never_raises(tmp_path):
    tasks = list(I.file_tasks([tmp_path / "missing.fits", write_cutout(tmp_path / "nan.fits", nan=True)]))
    results = [I.read_task(t) for t in tasks]
    assert all(isinstance(r, I.Failure) for r in results)
    assert "no such file" in results[0].reason and "NaN" in results[1].reason
    ok = I.read_task(next(I.file_tasks([write_cutout(tmp_path / "good.fits")])))
    assert isinstance(ok, I.Item) and ok.image.shape == (150, 150) and ok.image.dtype == np.uint8
    assert ok.ra is None and "no celestial WCS" in ok.preprocessing and "resized" in ok.preprocessing


def test_ids_come_from_the_pixels_not_the_path(tmp_path):
    write_cutout(tmp_path / "a.fits")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "renamed.fits").write_bytes((tmp_path / "a.fits").read_bytes())
    write_cutout(tmp_path / "b.fits", seed=1)
    tasks = list(I.file_tasks([tmp_path / "a.fits", tmp_path / "copy" / "renamed.fits", tmp_path / "b.fits"]))
    assert len({t.key for t in tasks}) == 3  # inputs are told apart by path ...
    ids = [I.read_task(t).id for t in tasks]
    assert ids[0] == ids[1] != ids[2]  # ... sources by what they are
    assert [I.read_task(t).id for t in I.file_tasks([tmp_path / "a.fits"])] == [ids[0]]


def test_duplicates_resume_and_retry(tmp_path, encoder):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        write_cutout(folder / f"g{i}.fits", seed=i)
    write_cutout(folder / "broken.fits", nan=True)
    write_cutout(folder / "stays-broken.fits", nan=True)
    store_path = tmp_path / "store"
    run = dict(store=store_path, encoder=encoder, workers=0, batch_size=2, progress=False, optimize_every=2)

    first = I.ingest([folder, folder / "g0.fits"], **run)  # g0 twice: stored once
    assert (first.ok, first.failed, first.skipped) == (5, 2, 1)
    store = Store(store_path)
    assert store.count(SOURCES) == 5 and store.count(ERRORS) == 2

    again = I.ingest([folder], **run)  # nothing new: no embedding, no new error rows
    assert (again.ok, again.embedded, again.failed, again.skipped) == (0, 0, 0, 7)
    assert store.count(ERRORS) == 2

    write_cutout(folder / "broken.fits", seed=9)  # the user fixes one file
    assert I.ingest([folder], **run).ok == 0  # failures are not retried without retry_failed
    retried = I.ingest([folder], retry_failed="changed", **run)  # only the file that changed
    assert (retried.ok, retried.failed, retried.skipped) == (1, 0, 6)
    assert store.count(SOURCES) == 6 and store.count(ERRORS) == 1
    every = I.ingest([folder], retry_failed="all", **run)  # the unchanged failure too
    assert (every.ok, every.failed, every.skipped) == (0, 1, 6)
    assert store.count(ERRORS) == 1
    ids = store.table(SOURCES).to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert any(i.columns == ["id"] for i in store.table(SOURCES).list_indices())
    with pytest.raises(ValueError, match="retry_failed"):
        I.ingest([folder], retry_failed="sometimes", **run)


def test_batches_of_the_sampler_skip_what_was_seen_unchanged(tmp_path, encoder):
    store = Store(tmp_path / "store")
    I.prepare_store(store, encoder)
    tasks = [I.Task(key=f"/x/t{i}.fits", name=f"t{i}", source=f"/x/t{i}.fits", kind="file", stamp="1:1") for i in range(7)]
    store.add_errors(I.error_rows([I.Failure(tasks[1], "OSError: x"), I.Failure(tasks[4], "OSError: y")]))
    store.record_files([{"key": tasks[5].key, "stamp": "1:1", "id": "s5", "seen_at": None},
                        {"key": tasks[6].key, "stamp": "0:0", "id": "s6", "seen_at": None}])  # t6 changed since
    summary = I.IngestSummary()
    batches = list(I.TodoBatches(store, iter(tasks), 3, summary))
    assert [[t.name for t in b] for b in batches] == [["t0", "t2"], ["t3"], ["t6"]]
    assert summary.skipped == 3


def test_problems_found_while_walking_become_failures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_cutout(folder / "good.fits")
    (folder / "a.fits").symlink_to(folder / "b.fits")
    (folder / "b.fits").symlink_to(folder / "a.fits")  # a -> b -> a
    (folder / "self").symlink_to(folder, target_is_directory=True)  # a folder link to itself
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)  # and one to its parent
    results = {t.name: I.read_task(t) for t in I.file_tasks([folder])}
    assert isinstance(results["good"], I.Item)
    for name in ("a", "b", "self", "up"):
        assert isinstance(results[name], I.Failure) and "loop" in results[name].reason, (name, results[name])
    vanished = I.file_task(folder / "good.fits")
    (folder / "good.fits").unlink()  # gone between the walk and the read
    assert "no such file" in I.read_task(vanished).reason


def test_sources_that_match_nothing_are_refused_before_a_store_exists(tmp_path, encoder):
    (tmp_path / "empty").mkdir()
    for bad, message in [(tmp_path / "empty", "holds no files"), (str(tmp_path / "*.fits"), "matches no file"),
                         (tmp_path / "missing.fits", "no such file")]:  # fmt: skip
        with pytest.raises(I.InputError, match=message):
            I.ingest([bad], tmp_path / "store", encoder=encoder, workers=0, progress=False)
    assert not (tmp_path / "store").exists()


def test_adapter_runs_load_with_their_settings_and_change_the_fingerprint(tmp_path, tiny_siglip_dir, encoder):
    import json

    import torch

    from radioalign.model import apply_lora, load_siglip
    from radioalign.survey.encoder import encoder_for_store

    model, _ = load_siglip(tiny_siglip_dir, device="cpu")
    model = apply_lora(model, "vision", r=2)
    with torch.no_grad():  # a 'trained' adapter: LoRA B starts at zero, which would change nothing
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    run = tmp_path / "run"
    model.save_pretrained(run / "adapter")
    (run / "config.json").write_text(json.dumps({"preprocessing": "siglip", "lowercase": True}))
    tuned = load_encoder(tiny_siglip_dir, adapter=run, device="cpu", dtype="float32")
    assert tuned.adapter.endswith("adapter") and tuned.preprocessing == "siglip" and tuned.lowercase is True
    assert tuned.fingerprint != encoder.fingerprint
    images = np.random.default_rng(0).integers(0, 256, (2, 150, 150), dtype=np.uint8)
    assert not np.allclose(tuned.images(images), encoder.images(images), atol=1e-4)
    again = encoder_for_store(tuned.describe(), device="cpu", dtype="float32")  # what a query on its store loads
    assert again.fingerprint == tuned.fingerprint and again.preprocessing == "siglip"
    with pytest.raises(FileNotFoundError):
        load_encoder(tiny_siglip_dir, adapter=tmp_path / "nothing", device="cpu")
