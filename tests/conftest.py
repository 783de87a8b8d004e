"""Shared fixtures: a simulated log on disk and an isolated MLflow store per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.io import sidecar_path, write_frame
from features.simulate import simulate_log

SMALL_CASES = 2500


@pytest.fixture(scope="session")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated CSV log with its truth file, as `l2c simulate` writes it."""
    folder = tmp_path_factory.mktemp("log")
    path = folder / "l2c.csv"
    events, truth = simulate_log(n_cases=SMALL_CASES, seed=11)
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    truth.to_csv(sidecar_path(path, "truth"), index=False)
    return path


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private SQLite tracking store and artifact folder for the whole session."""
    home = tmp_path_factory.mktemp("mlflow")
    previous_cwd = Path.cwd()
    previous_uri = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.chdir(home)
    try:
        yield home
    finally:
        os.chdir(previous_cwd)
        if previous_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_uri


@pytest.fixture(scope="session")
def trained(small_log: Path, mlflow_home: Path):
    """One real training run of all three targets, registered and promoted."""
    from training.config import TrainConfig
    from training.promote import promote
    from training.train import train

    outcome = train(small_log, None, "all", TrainConfig(lgbm={"n_estimators": 400}))
    for name in outcome.versions:
        promote(name, outcome.run_id)
    return outcome


#: fixtures that train models or start MLflow: a test that uses one is slow (``-m "not
#: slow"`` leaves it out: ``make test-fast``)
_SLOW_FIXTURES = {"trained", "mlflow_home", "store", "client", "api"}
#: folders and files whose tests read the real public logs, fuzz the API, or drive a
#: browser or a cluster
_SLOW_PATHS = ("tests/benchmarks/", "tests/serving/test_fuzz.py",
               "tests/insight/test_pm4py_oracle.py", "tests/scaleout/", "tests/pages/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests once, by what they use, instead of by hand in every file."""
    for item in items:
        path = item.path.as_posix()
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(
                part in path for part in _SLOW_PATHS):
            item.add_marker(pytest.mark.slow)
