"""The promotion gate compares champion and challenger only on frozen rows neither trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage import registry
from triage.data import config_from_dict, load_dataset, read_config_file
from triage.promote import TrainedRows, compare_and_promote, comparison_rows
from triage.testing import REPO
from triage.training import (
    TRAINED_ROWS_FILE,
    FrozenRule,
    TrainOptions,
    stable_hash,
    train,
)


def _topic_config(data_root: Path, **split: object):
    """configs/traffy.toml with the topic head only (fast), optionally another [split]."""
    raw = read_config_file(REPO / "configs" / "traffy.toml")
    raw["heads"] = {"topic": raw["heads"]["topic"]}
    raw.pop("agency", None)
    raw["split"] = {**raw["split"], **split}
    return config_from_dict(raw, data_root)


def _shuffled_copy(traffy_slice: Path, out: Path) -> Path:
    """The same tickets with their topic labels shuffled among them: a deliberately bad training set."""
    (out / "traffy").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for path in sorted((traffy_slice / "traffy").glob("*.parquet")):
        month = pd.read_parquet(path)
        month["type_labels"] = rng.permutation(month["type_labels"].to_numpy())
        month.to_parquet(out / "traffy" / path.name, index=False)
    return out


@pytest.fixture(scope="module")
def champion(traffy_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("gate") / "models"
    train(_topic_config(traffy_slice), models, TrainOptions(), log=lambda _m: None)
    return models


def _models_copy(champion: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(champion, models, symlinks=True)
    return models


def test_a_worse_candidate_is_refused_on_rows_neither_trained_on(champion, traffy_slice, tmp_path):
    models = _models_copy(champion, tmp_path)
    before = registry.read_metadata(models / "current")["version"]
    bad_data = _shuffled_copy(traffy_slice, tmp_path / "bad")
    cand, _ = train(_topic_config(bad_data), models, TrainOptions(), log=lambda _m: None, make_current=False)
    printed: list[str] = []
    result = compare_and_promote(models, cand, _topic_config(traffy_slice), log=printed.append)
    assert not result.promoted
    assert registry.read_metadata(models / "current")["version"] == before
    assert result.candidate["micro_f1"] < result.current["micro_f1"] - 0.2
    # the rows compared are frozen tickets (the newest two weeks) that neither model's training record holds
    config = _topic_config(traffy_slice)
    rule = FrozenRule.from_config(config, load_dataset(config)[0])
    rows, _removed = comparison_rows(config, None, rule, [])
    assert rows["time"].astype(str).min() >= "2022-12-18"
    assert result.rows > 50 and set(result.ids) <= set(rows["id"])
    for model_dir in (models / "current", cand):
        record = TrainedRows.load(model_dir)
        compared = rows[rows["id"].isin(result.ids)]
        assert not record.seen(compared["id"].tolist(), compared["norm"].tolist()).any()
    text = "\n".join(printed)
    assert "neither model trained on any of them" in text and "kept" in text and result.ids[0] in text


def test_a_fair_candidate_is_accepted(champion, traffy_slice, tmp_path):
    models = _models_copy(champion, tmp_path)
    cand, _ = train(_topic_config(traffy_slice), models, TrainOptions(), log=lambda _m: None, make_current=False)
    result = compare_and_promote(models, cand, _topic_config(traffy_slice), log=lambda _m: None)
    assert result.promoted and result.rows > 50
    assert result.candidate["micro_f1"] == pytest.approx(result.current["micro_f1"], abs=0.02)
    assert registry.resolve(models / "current") == cand.resolve()


def test_a_candidate_trained_on_the_frozen_rows_cannot_be_compared_there(champion, traffy_slice, tmp_path):
    """A run that froze nothing trained on the frozen tickets: none is left to compare on, so it is kept out."""
    models = _models_copy(champion, tmp_path)
    leaky, _ = train(_topic_config(traffy_slice, frozen_from="2100-01-01"), models, TrainOptions(),
                     log=lambda _m: None, make_current=False)
    printed: list[str] = []
    result = compare_and_promote(models, leaky, _topic_config(traffy_slice), log=printed.append)
    assert not result.promoted and result.rows == 0
    assert "no frozen row is unseen by both models" in "\n".join(printed)


def test_a_current_model_without_a_training_record_is_not_replaced_unless_forced(champion, traffy_slice, tmp_path):
    models = _models_copy(champion, tmp_path)
    (registry.resolve(models / "current") / TRAINED_ROWS_FILE).unlink()
    cand, _ = train(_topic_config(traffy_slice), models, TrainOptions(), log=lambda _m: None, make_current=False)
    assert not compare_and_promote(models, cand, _topic_config(traffy_slice), log=lambda _m: None).promoted
    assert compare_and_promote(models, cand, _topic_config(traffy_slice), log=lambda _m: None, force=True).promoted


def test_held_out_corrections_join_the_frozen_slice_and_stay_out_of_training(traffy_slice, tmp_path):
    month = pd.read_parquet(sorted((traffy_slice / "traffy").glob("*.parquet"))[3])
    tickets = month[month["type_labels"].fillna("").str.len() > 0].head(40)
    corrections = pd.DataFrame({"id": tickets["ticket_id"], "text": tickets["comment"], "time": "",
                                "district": None, "topic": [["ถนน"]] * len(tickets), "urgency": None, "agency": ""})
    config = _topic_config(traffy_slice)
    held = FrozenRule.from_config(config, load_dataset(config)[0]).held_corrections(corrections)
    assert 0 < held.sum() < len(held)
    path, metrics = train(config, tmp_path / "m", TrainOptions(corrections=corrections), log=lambda _m: None)
    assert metrics["frozen"]["corrections"] == int(held.sum())
    record = TrainedRows.load(path)
    ids = corrections["id"].tolist()
    seen_ids = np.array([h in record.ids for h in stable_hash(ids).tolist()])
    assert not seen_ids[held].any() and seen_ids[~held].all()
