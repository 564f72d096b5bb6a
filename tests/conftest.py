"""Session fixtures: a small Traffy model trained once on a real slice of the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage import registry
from triage.data import load_config
from triage.testing import REPO, shared_data_dir, write_traffy_slice
from triage.training import TrainOptions, train


@pytest.fixture(scope="session")
def traffy_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shared_data_dir() / "traffy").is_dir():
        pytest.skip(f"shared data not found at {shared_data_dir()} (set TRIAGE_SHARED_DATA)")
    return write_traffy_slice(tmp_path_factory.mktemp("slice"))


@pytest.fixture(scope="session")
def small_model_dir(traffy_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with one trained version and ``current`` pointing at it."""
    models = tmp_path_factory.mktemp("models")
    config = load_config(REPO / "configs" / "traffy.toml", traffy_slice)
    train(config, models, TrainOptions(), log=lambda _msg: None)
    return models


@pytest.fixture(scope="session")
def small_model(small_model_dir: Path):
    model, _meta = registry.load(small_model_dir / "current")
    return model
