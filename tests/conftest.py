"""Session fixtures (a small Traffy model trained once on a real slice of the shared data) and test tiers.

Every test gets one tier marker (registered in pyproject.toml), so ``pytest -m unit`` runs in
seconds: ``browser`` (test_review_browser.py), ``server`` (tests that start serve.py), ``model``
(tests that use the shared data slice or the small model), ``unit`` (everything else).

Without the shared data the data-backed tests skip on a developer's machine; with ``CI`` set
they fail, so a CI run cannot pass by skipping them.

Store and API tests take ``db_url`` and run once per backend: a SQLite file in the test's tmp dir,
and a fresh database (a copy of a migrated template) in a throwaway PostgreSQL cluster that the
session starts in a temporary folder (``triage.pgcluster``; as root, as the ``postgres`` user). The
PostgreSQL runs skip only when no cluster can be started and ``CI`` is not set; with ``CI`` they fail.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import require_shared_data

# the training code (scikit-learn, pandas, datasets) is imported inside the fixtures that need it,
# so that the unit tier starts fast

TIERS = ("unit", "model", "server", "browser")
MODULE_TIERS = {"test_review_browser": "browser", "test_api_server": "server", "test_followup_server": "server",
                "test_replicas_server": "server"}
MODEL_FIXTURES = {"traffy_slice", "small_model_dir", "small_model"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(t) for t in TIERS):
            continue
        module = item.module.__name__ if item.module is not None else ""  # type: ignore[attr-defined]
        if module in MODULE_TIERS:
            tier = MODULE_TIERS[module]
        elif MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            tier = "model"
        else:
            tier = "unit"
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def traffy_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from triage.testing import write_traffy_slice

    data = require_shared_data("traffy")
    return write_traffy_slice(tmp_path_factory.mktemp("slice"), data=data.parent)


@pytest.fixture(scope="session")
def small_model_dir(traffy_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with one trained version and ``current`` pointing at it."""
    from triage.data import load_config
    from triage.testing import REPO
    from triage.training import TrainOptions, train

    models = tmp_path_factory.mktemp("models")
    config = load_config(REPO / "configs" / "traffy.toml", traffy_slice)
    train(config, models, TrainOptions(), log=lambda _msg: None)
    return models


@pytest.fixture(scope="session")
def small_model(small_model_dir: Path):
    from triage import registry

    model, _meta = registry.load(small_model_dir / "current")
    return model


BACKENDS = ("sqlite", "postgresql")
_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A throwaway PostgreSQL cluster for the session (skipped outside CI when none can be started)."""
    from triage.pgcluster import Cluster

    try:
        cluster = Cluster().start()
    except Exception as exc:  # no binaries, no runuser, initdb or pg_ctl failing: all mean "cannot start"
        message = f"PostgreSQL cannot be started here: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; with CI set the PostgreSQL tests fail instead of skipping", pytrace=False)
        pytest.skip(message)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster) -> str:
    """A database migrated once; each test's database is a copy of it (CREATE DATABASE ... TEMPLATE)."""
    from triage.database import open_store

    open_store(pg_cluster.create_database("triage_template")).close()
    return "triage_template"


@pytest.fixture()
def pg_url(pg_cluster, pg_template: str) -> str:
    """A fresh, migrated PostgreSQL database for one test."""
    return str(pg_cluster.create_database(f"t{next(_databases)}", template=pg_template))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's case database URL, once per backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return str(request.getfixturevalue("pg_url"))
