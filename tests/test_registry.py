"""Saving and loading versioned artifacts: atomic current, checksum and metadata checks."""

import json
import os
import shutil
import sys
import threading
from types import SimpleNamespace

import joblib
import pytest

from triage import registry
from triage.errors import ModelError


@pytest.fixture
def models_copy(small_model_dir, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(small_model_dir, dst, symlinks=True)
    return dst


def test_current_points_at_a_loadable_version(models_copy):
    model, meta = registry.load(models_copy / "current")
    assert model.version == meta["version"] and (models_copy / "current").is_symlink()
    assert {"topic", "urgency"} <= set(meta["labels"]) and meta["dataset_fingerprint"]
    assert {"scikit-learn", "pythainlp", "nlpo3"} <= set(meta["libraries"])
    folder = registry.resolve(models_copy / "current")
    assert (folder / "report.md").read_text(encoding="utf-8").startswith("#")
    assert "micro_f1" in json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["topic"]["test"]


def test_corrupt_model_file_is_refused(models_copy):
    folder = registry.resolve(models_copy / "current")
    with (folder / registry.MODEL_FILE).open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    # not "corrupt": pytest's temp folder of this test has that word in its name
    with pytest.raises(ModelError, match="checksum differs"):
        registry.load(models_copy / "current")


def tiny_models(tmp_path, *versions):
    """A models folder of tiny artifacts (any picklable object with a version is one to the registry)."""
    models = tmp_path / "tiny"
    for v in versions:
        registry.save(SimpleNamespace(version=v), {"labels": {}, "metrics": {}}, models, v)
    return models


def test_a_loadable_model_file_that_is_not_the_saved_one_is_refused(tmp_path):
    """Only the checksum catches this: the replacement unpickles fine and carries the right version."""
    models = tiny_models(tmp_path, "v1")
    model, meta = registry.load(models / "current")
    assert model.version == meta["version"] == "v1" and meta["model_sha256"]
    joblib.dump(SimpleNamespace(version="v1", planted=True), models / "v1" / registry.MODEL_FILE)
    with pytest.raises(ModelError, match="checksum differs"):
        registry.load(models / "current")
    (models / "v1" / registry.MODEL_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        registry.load(models / "v1")


def test_a_model_file_of_another_version_is_refused(tmp_path):
    models = tiny_models(tmp_path, "v1", "v2")
    shutil.copy(models / "v2" / registry.MODEL_FILE, models / "v1" / registry.MODEL_FILE)
    meta = json.loads((models / "v1" / registry.METADATA_FILE).read_text())
    meta["model_sha256"] = json.loads((models / "v2" / registry.METADATA_FILE).read_text())["model_sha256"]
    (models / "v1" / registry.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="does not match its metadata version 'v1'"):
        registry.load(models / "v1")
    meta["format"] = 99
    (models / "v1" / registry.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="artifact format 99"):
        registry.load(models / "v1")


def test_current_is_swapped_by_one_rename_and_never_missing(tmp_path):
    """``current`` must be replaced by an atomic rename: never removed, so a reader never finds it missing.

    An audit hook sees every os.remove/unlink and os.rename/replace the swap makes (deterministic);
    a reader thread checks that ``current`` resolves during many swaps.
    """
    models = tiny_models(tmp_path, "v1", "v2")
    assert registry.resolve(models / "current").name == "v2"
    with pytest.raises(ModelError, match="no model version v3"):
        registry.set_current(models, "v3")
    link = str(models / "current")
    events: list[tuple[str, tuple]] = []
    recording = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if recording.is_set() and event in ("os.remove", "os.rename", "os.symlink"):
            events.append((event, tuple(str(a) for a in args[:2])))

    sys.addaudithook(hook)  # cannot be removed; it records only while `recording` is set
    recording.set()
    try:
        registry.set_current(models, "v1")
    finally:
        recording.clear()
    assert registry.resolve(models / "current").name == "v1"
    assert not [e for e in events if e[0] == "os.remove" and e[1][0] == link], events
    assert [e for e in events if e[0] == "os.rename" and e[1][1] == link], events

    missing = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not os.path.exists(link):
                missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(300):
            registry.set_current(models, "v2" if i % 2 else "v1")
    finally:
        stop.set()
        t.join()
    assert not missing
    assert not list(models.glob(".current*"))  # no temporary link left behind


def test_a_temporary_link_left_by_a_crashed_swap_does_not_block_the_next(tmp_path):
    models = tiny_models(tmp_path, "v1", "v2")
    os.symlink("gone", models / f".current.{os.getpid()}")  # dangling: the crash happened before the rename
    registry.set_current(models, "v1")
    assert registry.resolve(models / "current").name == "v1"
    assert not list(models.glob(".current*"))


def test_mismatched_library_version_is_refused(models_copy):
    folder = registry.resolve(models_copy / "current")
    meta = json.loads((folder / registry.METADATA_FILE).read_text())
    meta["libraries"]["scikit-learn"] = "0.1.0"
    (folder / registry.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="scikit-learn 0.1.0"):
        registry.load(models_copy / "current")


def test_missing_metadata_and_missing_model_are_clear(models_copy, tmp_path):
    with pytest.raises(ModelError, match="train.py"):
        registry.load(tmp_path / "nowhere")
    folder = registry.resolve(models_copy / "current")
    (folder / registry.METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="metadata.json"):
        registry.load(folder)


def test_save_is_atomic_and_current_moves_only_when_asked(small_model, models_copy):
    before = registry.resolve(models_copy / "current")
    meta = {"labels": {}, "metrics": {}}
    registry.save(small_model, meta, models_copy, "v-new", make_current=False)
    assert registry.resolve(models_copy / "current") == before
    with pytest.raises(ModelError, match="already exists"):
        registry.save(small_model, meta, models_copy, "v-new")
    with pytest.raises(TypeError):  # a crash mid-save leaves neither a version nor a temp folder
        registry.save(small_model, {"bad": object()}, models_copy, "v-broken")
    assert not (models_copy / "v-broken").exists() and not list(models_copy.glob(".v-broken*"))
    registry.set_current(models_copy, "v-new")
    assert registry.resolve(models_copy / "current").name == "v-new"


def test_the_fast_copy_is_loaded_only_when_it_is_the_checked_models_own(tmp_path, monkeypatch):
    """``model.pkl`` (a plain pickle) is what ``load`` reads when its checksum and origin match; else
    ``model.joblib`` as before, and a bad or foreign copy never changes what is loaded."""
    models = tiny_models(tmp_path, "v1", "v2")
    folder = models / "v1"
    meta = json.loads((folder / registry.METADATA_FILE).read_text())
    assert meta["fast_copy"]["file"] == registry.FAST_FILE and (folder / registry.FAST_FILE).is_file()
    assert meta["fast_copy"]["made_from"] == meta["model_sha256"]
    joblib_reads: list[str] = []
    real_joblib_load = joblib.load
    monkeypatch.setattr(joblib, "load", lambda f: joblib_reads.append(str(f)) or real_joblib_load(f))
    assert registry.load(folder)[0].version == "v1" and joblib_reads == []  # the fast copy
    shutil.copy(models / "v2" / registry.FAST_FILE, folder / registry.FAST_FILE)  # another version's copy
    assert registry.load(folder)[0].version == "v1" and len(joblib_reads) == 1  # checksum differs: joblib
    (folder / registry.FAST_FILE).write_bytes(b"garbage")
    assert registry.load(folder)[0].version == "v1" and len(joblib_reads) == 2
    # a copy whose checksum is right but that was made from another model.joblib is not used either
    registry.add_fast_copy(folder)  # (reads model.joblib itself: the copy there is garbage)
    assert registry.load(folder)[0].version == "v1" and len(joblib_reads) == 3  # the new copy is used
    meta = json.loads((folder / registry.METADATA_FILE).read_text())
    meta["fast_copy"]["made_from"] = "0" * 64
    (folder / registry.METADATA_FILE).write_text(json.dumps(meta))
    assert registry.load(folder)[0].version == "v1" and len(joblib_reads) == 4


def test_a_version_saved_without_a_fast_copy_gets_one(tmp_path):
    models = tiny_models(tmp_path, "v1")
    folder = models / "v1"
    meta = json.loads((folder / registry.METADATA_FILE).read_text())
    del meta["fast_copy"]
    (folder / registry.METADATA_FILE).write_text(json.dumps(meta))
    (folder / registry.FAST_FILE).unlink()
    assert registry.load(folder)[0].version == "v1"  # still loads, from model.joblib
    path = registry.add_fast_copy(models / "current")
    assert path == folder / registry.FAST_FILE and path.is_file()
    after = json.loads((folder / registry.METADATA_FILE).read_text())
    assert after["fast_copy"]["made_from"] == after["model_sha256"] == meta["model_sha256"]
    assert {k: v for k, v in after.items() if k != "fast_copy"} == meta
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert registry.load(folder)[0].version == "v1"
