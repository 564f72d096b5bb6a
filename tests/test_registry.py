"""Saving and loading versioned artifacts: atomic current, checksum and metadata checks."""

import json
import shutil

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
    with pytest.raises(ModelError, match="corrupt"):
        registry.load(models_copy / "current")


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
