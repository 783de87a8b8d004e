"""Training end to end on a small simulated log, with a real MLflow SQLite store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.errors import EventLogError
from features.log import export_frame, read_log
from models.registry import CHAMPION, champion_uri
from training.config import TrainConfig
from training.promote import PromotionRefused, promote
from training.runs import compare_runs
from training.train import train


def test_models_beat_their_baselines_on_the_temporal_test_set(trained) -> None:
    by_name = {r.target.name: r for r in trained.results}
    outcome = by_name["outcome"]
    assert outcome.metrics["auc"] > 0.7
    assert outcome.metrics["auc"] > outcome.baselines["stage_rate"]["auc"]
    assert outcome.metrics["ece"] < 0.08
    # the oracle knows the latent deal health: no honest model should beat it by much
    assert outcome.oracle["auc"] > outcome.metrics["auc"] - 0.02
    assert outcome.oracle["auc_ratio"] == pytest.approx(
        outcome.metrics["auc"] / outcome.oracle["auc"])
    for name in ("remaining_time", "payment_delay"):
        result = by_name[name]
        assert result.metrics["mae_days"] < result.baselines["historical"]["mae_days"] * 1.1
        assert 0.6 < result.metrics["coverage_80"] < 0.95


def test_run_logs_data_params_metrics_plots_and_registers_models(trained) -> None:
    client = MlflowClient()
    run = client.get_run(trained.run_id)
    assert run.data.params["data.sha256"] == trained.data.fingerprint["sha256"]
    assert int(run.data.params["data.cases"]) == 2500
    assert run.data.metrics["outcome.auc"] == pytest.approx(
        next(r for r in trained.results if r.target.name == "outcome").metrics["auc"])
    assert any(k.startswith("outcome.baseline_logreg.") for k in run.data.metrics)
    assert run.data.metrics["features.seconds"] == pytest.approx(trained.data.features_s)
    assert trained.data.features_s > 0
    assert any(k.startswith("outcome.prefix_1-2.") for k in run.data.metrics)
    assert run.inputs.dataset_inputs[0].dataset.digest == trained.data.fingerprint["sha256"][:16]
    assert run.data.tags["data.leaky_columns"] == "none found"  # the simulator is honest
    assert "data/leakage.json" in {a.path for a in client.list_artifacts(trained.run_id, "data")}
    artifacts = {a.path for a in client.list_artifacts(trained.run_id, "plots")}
    for expected in ("plots/outcome_calibration.png", "plots/outcome_shap_summary.png",
                     "plots/remaining_time_residuals.png", "plots/payment_delay_mae_by_prefix.png"):
        assert expected in artifacts
    for name, version in trained.versions.items():
        registered = {"outcome": "l2c-outcome", "remaining_time": "l2c-remaining-time",
                      "payment_delay": "l2c-payment-delay"}[name]
        champion = client.get_model_version_by_alias(registered, CHAMPION)
        assert int(champion.version) == version


def test_registry_model_predicts_exactly_what_the_trained_one_did(trained) -> None:
    events = trained.data.split.test
    raw = export_frame(events, trained.data.log.mapping)
    for result in trained.results:
        direct = result.bundle.predict_events(events)
        loaded = mlflow.pyfunc.load_model(champion_uri(result.target.registered_name))
        via_registry = loaded.predict(raw)
        column = "p_win" if result.target.kind == "classification" else "prediction_days"
        assert len(via_registry) == len(direct) == events["case_id"].nunique()
        np.testing.assert_allclose(via_registry[column].to_numpy(), direct[column].to_numpy(),
                                   rtol=0, atol=1e-12)


def test_promotion_refuses_a_worse_model_unless_forced(trained, small_log: Path) -> None:
    # a large stump on the logistic base, shipped as is: under honest selection a weak
    # LightGBM ships the logistic regression instead, as good as the champion
    worse = train(small_log, None, "outcome",
                  TrainConfig(lgbm={"n_estimators": 1, "num_leaves": 2, "learning_rate": 1.0},
                              select_kind=False))
    client = MlflowClient()
    before = client.get_model_version_by_alias("l2c-outcome", CHAMPION).version
    with pytest.raises(PromotionRefused, match=r"worse than champion version .* auc"):
        promote("outcome", worse.run_id)
    assert client.get_model_version_by_alias("l2c-outcome", CHAMPION).version == before
    forced = promote("outcome", str(worse.versions["outcome"]), force=True)
    assert forced.forced and forced.candidate_score < forced.champion_score
    promote("outcome", before, force=True)  # restore for the other tests


def test_corrupt_log_fails_before_training_and_leaves_nothing(tmp_path: Path,
                                                              mlflow_home: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_home / 'mlflow.db'}")
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    models_before = len(client.search_registered_models())
    bad = tmp_path / "bad.csv"
    rows = [f"O{i},Lead Captured,not a date,ann,10" for i in range(200)]
    bad.write_text("opportunity_id,activity,event_time,user,amount\n" + "\n".join(rows) + "\n")
    with pytest.raises(EventLogError, match=r"200 of 200 rows \(100%\) have no usable time"):
        train(bad)
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before
    assert len(client.search_registered_models()) == models_before


def test_runs_are_compared_side_by_side(trained) -> None:
    table = compare_runs()
    assert trained.run_id[:12] in table.columns
    assert "outcome.auc" in table.index and "data.sha256" in table.index
    assert table.loc["data.cases", trained.run_id[:12]] == "2500"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_predictions(trained, mlflow_home: Path) -> None:
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_bin), "models", "serve", "-m", champion_uri("l2c-outcome"),
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ['PATH']}"})
    try:
        events = trained.data.split.test
        some = events[events["case_id"].isin(events["case_id"].unique()[:3])]
        raw = export_frame(some, trained.data.log.mapping)
        payload = {"dataframe_split": raw.astype(object).where(raw.notna(), None)
                   .to_dict(orient="split")}
        payload["dataframe_split"].pop("index")
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=payload,
                                      timeout=30)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert response is not None, "mlflow models serve did not start within 90 s"
        assert response.status_code == 200, response.text
        predictions = pd.DataFrame(response.json()["predictions"])
        assert len(predictions) == 3
        assert predictions["p_win"].between(0, 1).all()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_training_reads_through_the_mapping_and_keeps_the_books(trained, small_log) -> None:
    log = read_log(small_log)
    assert trained.data.fingerprint["events"] == len(log.events)
    assert trained.data.split.split_time > log.events["timestamp"].min()


def test_a_leaky_column_is_flagged_at_training_time_with_the_evidence(
        small_log: Path, tmp_path: Path) -> None:
    import pandas as pd

    from features.mapping import Mapping, default_mapping
    from models.targets import resolve_targets
    from training.config import TrainConfig
    from training.data import prepare_training_data

    export = pd.read_csv(small_log)
    won = export.groupby("opportunity_id")["activity"].transform(
        lambda a: (a == "Opportunity Won").any())
    export["close_value"] = export["amount"].where(won, 0.0)  # 0 for every loss
    path = tmp_path / "leaky.csv"
    export.to_csv(path, index=False)
    raw = default_mapping().model_dump()
    raw["extra_columns"] = {"close_value": {"column": "close_value", "type": "number"}}
    data = prepare_training_data(path, Mapping.from_dict(raw), TrainConfig(),
                                 resolve_targets("outcome"))
    [leak] = data.leaks
    assert leak.column == "close_value" and "ROC AUC" in leak.evidence
