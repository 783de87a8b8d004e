"""Promotion and training under faults: damaged versions, interrupted runs, two
trainings starting on a new store at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _get_store
from typer.testing import CliRunner

import training.tracking as tracking
from l2c.cli import app
from models.targets import TARGETS
from tests.models.registry_faults import champion_of, copy_of_version, forget
from training.config import TrainConfig
from training.promote import (
    CandidateUnusable,
    ComparisonFailed,
    NotPromotable,
    PromotionError,
    promote,
    resolve_version,
)

NAME = "l2c-outcome"
runner = CliRunner()


def test_forced_promotion_of_a_corrupt_version_is_refused_with_the_reason(
        trained, tmp_path: Path) -> None:
    good = champion_of(NAME)
    corrupt = copy_of_version(NAME, good, tmp_path, damage=True)
    try:
        with pytest.raises(CandidateUnusable, match=rf"version {corrupt} cannot be loaded"):
            promote("outcome", str(corrupt), force=True)
        result = runner.invoke(app, ["promote", str(corrupt), "--target", "outcome", "--force"])
        assert result.exit_code == 1
        assert "refused:" in result.output and "cannot be loaded" in result.output
        assert "Traceback" not in result.output
        assert champion_of(NAME) == good
    finally:
        forget(NAME, corrupt)


def test_a_damaged_champion_is_only_replaced_when_forced(trained, tmp_path: Path) -> None:
    """Nothing to compare with: refused with the reason, and --force replaces it."""
    client = MlflowClient()
    good = champion_of(NAME)
    corrupt = copy_of_version(NAME, good, tmp_path / "bad", damage=True)
    fresh = copy_of_version(NAME, good, tmp_path / "copy")
    client.set_registered_model_alias(NAME, "champion", str(corrupt))
    try:
        with pytest.raises(ComparisonFailed, match=rf"current champion cannot be compared with: "
                                            rf".*version {corrupt} cannot be loaded"):
            promote("outcome", str(fresh))
        assert champion_of(NAME) == corrupt
        result = promote("outcome", str(fresh), force=True)
        assert (result.version, result.previous, result.candidate_score) == (fresh, corrupt, None)
    finally:
        client.set_registered_model_alias(NAME, "champion", str(good))
        forget(NAME, corrupt, fresh)


def test_versions_of_unfinished_or_deleted_runs_are_not_promotable(trained,
                                                                   tmp_path: Path) -> None:
    client = MlflowClient()
    good = champion_of(NAME)
    experiment = client.get_run(trained.run_id).info.experiment_id
    killed = client.create_run(experiment).info.run_id  # RUNNING forever, as after kill -9
    deleted = client.create_run(experiment).info.run_id
    client.set_terminated(deleted, "FAILED")
    client.delete_run(deleted)
    of_killed = copy_of_version(NAME, good, tmp_path / "k", run_id=killed)
    of_deleted = copy_of_version(NAME, good, tmp_path / "d", run_id=deleted)
    try:
        with pytest.raises(NotPromotable, match=r"is RUNNING, not FINISHED"):
            promote("outcome", str(of_killed))
        with pytest.raises(NotPromotable, match=r"was deleted"):
            promote("outcome", deleted)  # by run id too
        with pytest.raises(PromotionError, match="not a version number, 'latest' or a run"):
            promote("outcome", "x' or name = 'l2c-outcome")
        latest = resolve_version(client, TARGETS["outcome"], "latest")
        assert latest not in (of_killed, of_deleted) and latest < of_killed
        assert champion_of(NAME) == good
    finally:
        forget(NAME, of_killed, of_deleted)
        client.delete_run(killed)


@pytest.mark.parametrize("where", ["inside register_model", "after registering"])
def test_an_interrupted_training_leaves_no_promotable_version(trained, monkeypatch,
                                                            where: str) -> None:
    """Ctrl-C right after a model was registered (inside MLflow's ``register_model``,
    once the registry has the version, as seen with a real SIGINT; or just after it
    returned): the version and the run are deleted, and `promote latest` keeps to the
    versions of finished runs."""
    client = MlflowClient()
    target = TARGETS["outcome"]
    before = {int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    latest_before = resolve_version(client, target, "latest")
    registered: list[int] = []
    runs: list[str] = []
    real = tracking._register if where == "after registering" else mlflow.register_model

    def then_interrupt(*args, **kwargs):
        created = real(*args, **kwargs)
        registered.append(int(created if where == "after registering" else created.version))
        runs.append(mlflow.active_run().info.run_id)
        # as a real Ctrl-C inside MLflow: a read of the store stopped half way, whose
        # SQLite lock lives as long as this frame (kept by the traceback)
        reading = _get_store().engine.raw_connection().cursor()
        reading.execute("SELECT * FROM runs")
        reading.fetchone()
        raise KeyboardInterrupt

    if where == "after registering":
        monkeypatch.setattr(tracking, "_register", then_interrupt)
    else:
        monkeypatch.setattr(tracking.mlflow, "register_model", then_interrupt)
    outcome = next(r for r in trained.results if r.target.name == "outcome")
    with pytest.raises(KeyboardInterrupt):
        tracking.log_training_run(trained.data, [outcome], TrainConfig(), None)
    assert registered and registered[0] not in before  # it was registered, then
    after = {int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}
    assert after == before  # ... deleted again
    run = client.get_run(runs[0])
    assert (run.info.status, run.info.lifecycle_stage) == ("FAILED", "deleted")
    assert resolve_version(client, target, "latest") == latest_before
    assert mlflow.active_run() is None


_OPEN_STORE = """
import sys, time
import mlflow
from models.registry import configure_mlflow
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
configure_mlflow()
mlflow.set_experiment("lead-to-cash")
"""


@pytest.mark.slow  # starts three processes that each import MLflow
def test_two_trainings_starting_on_a_new_store_both_open_it(tmp_path: Path) -> None:
    """Each process creates the SQLite store as `l2c train` does; all start at the same
    instant on a file that does not exist yet."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    start = time.time() + 4.0  # after every process has imported mlflow
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_STORE, str(start)],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in processes]
    failures = [err for p, (_, err) in zip(processes, outputs, strict=True) if p.returncode]
    assert not failures, failures[0][-2000:]
    experiments = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).search_experiments()
    assert [e.name for e in experiments].count("lead-to-cash") == 1
