"""Honest models (issue 19): a baseline is shipped when nothing beats it and says so, thin
data is flagged with its counts, promotion refuses dishonest models, ``--target all``
trains what it can, and two processes keep their own model names in one store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.io import write_frame
from features.mapping import Mapping, default_mapping
from features.simulate import simulate_log
from models.selection import BASELINE_KINDS, choose
from models.targets import TARGETS, resolve_targets
from training.config import PromotionSettings, TrainConfig
from training.data import NotTrainableError, prepare_training_data
from training.fit import fit_target
from training.promote import DishonestModel, honesty_problems, promote


def _write(events: pd.DataFrame, path: Path) -> Path:
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    return path


def no_signal_log(path: Path, cases: int, seed: int = 3) -> Path:
    """Simulated deals cut to their first two events, then won or lost by a coin toss:
    the label is independent of everything a model can see."""
    events, _ = simulate_log(n_cases=cases, seed=seed)
    rng = np.random.default_rng(seed)
    start = events.groupby("opportunity_id").head(2)
    last = start.groupby("opportunity_id").tail(1).copy()
    last["event_time"] = last["event_time"] + pd.to_timedelta(rng.integers(5, 60, len(last)),
                                                              unit="D")
    last["activity"] = np.where(rng.random(len(last)) < 0.5, "Opportunity Won",
                                "Opportunity Lost")
    log = pd.concat([start, last]).sort_values(["opportunity_id", "event_time"], kind="stable")
    log["lost_reason"] = np.nan
    return _write(log.reset_index(drop=True), path)


def test_selection_keeps_the_simplest_candidate_unless_a_model_beats_it() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    informative = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
    noise = rng.random(len(y))
    prior = np.full(len(y), y.mean())
    assert choose(y, {"lightgbm": informative, "base_rate": prior}, True).kind == "lightgbm"
    lost = choose(y, {"lightgbm": noise, "base_rate": prior}, True)
    assert lost.kind == "base_rate"
    assert "not shipped: LightGBM" in lost.reason and "log_loss" in lost.reason


def test_a_log_without_signal_ships_a_baseline_and_says_so(tmp_path: Path) -> None:
    path = no_signal_log(tmp_path / "coin.csv", 1500)
    config = TrainConfig(lgbm={"n_estimators": 200})
    data = prepare_training_data(path, None, config, resolve_targets("outcome"))
    result = fit_target(data, TARGETS["outcome"], config)
    assert result.kind in BASELINE_KINDS
    info = result.bundle.info
    assert info["kind"] == result.kind and info["kind_is_baseline"]
    assert "not shipped" in result.kind_reason and "LightGBM" in result.kind_reason
    assert set(result.selection) == {"lightgbm", "logistic", "stage_rate", "base_rate"}
    # the shipped rate is the whole model: no tree adds anything, explanations add up
    bundle = result.bundle
    X = bundle.pipeline.feature_matrix(data.test_frame)
    assert np.allclose(bundle.model.tree_contributions(X), 0.0)
    assert np.allclose(bundle.contributions(X).sum(axis=1), bundle.raw_output(X))
    M = bundle.model.matrix(X)  # the API scores from the matrix
    assert np.allclose(bundle.predict_arrays(M)["p_win"], bundle.predict_arrays(X)["p_win"])
    assert abs(result.metrics["log_loss"] - result.baselines["base_rate"]["log_loss"]) < 0.02


def test_a_log_below_the_minimum_is_flagged_low_data_with_its_counts(tmp_path: Path) -> None:
    path = no_signal_log(tmp_path / "thin.csv", 160)
    config = TrainConfig(lgbm={"n_estimators": 50})
    data = prepare_training_data(path, None, config, resolve_targets("outcome"))
    message = data.low_data["outcome"]
    assert "low data" in message and "200 won, 200 lost" in message
    result = fit_target(data, TARGETS["outcome"], config)
    won, lost = (int(s) for s in pd.Series(message).str.extract(
        r"on (\d+) won, (\d+) lost").iloc[0])
    assert 0 < won < 200 and 0 < lost < 200 and won + lost <= 160
    assert result.low_data == message and result.bundle.info["low_data"] == message


def test_honesty_gate_names_both_numbers(trained) -> None:
    outcome = next(r for r in trained.results if r.target.name == "outcome")
    bundle = outcome.bundle
    assert honesty_problems(bundle, PromotionSettings()) == []  # the fixture's model is fine
    strict = PromotionSettings(max_ece=0.0001)
    [problem] = honesty_problems(bundle, strict)
    assert f"{outcome.metrics['ece']:.4f}" in problem and "0.0001" in problem
    with pytest.raises(DishonestModel, match="ECE"):
        promote("outcome", trained.run_id, settings=strict)
    forced = promote("outcome", trained.run_id, force=True, settings=strict)
    assert forced.warnings and "ECE" in forced.warnings[0]
    worse = {**bundle.info, "metrics": {**bundle.info["metrics"], "auc": 0.5,
                                        "log_loss": 0.9}}
    bundle.info, saved = worse, bundle.info
    try:
        problems = honesty_problems(bundle)
    finally:
        bundle.info = saved
    stage = outcome.baselines["stage_rate"]["auc"]
    assert any("0.5000" in p and f"{stage:.4f}" in p for p in problems)
    assert any("base rate" in p for p in problems)


def _mapping(name: str, payment: bool) -> Mapping:
    raw = default_mapping().model_dump()
    raw["name"] = name
    if not payment:
        raw["roles"].update(invoice=[], payment=[], case_end=["Opportunity Lost"])
    return Mapping.from_dict(raw)


def test_two_processes_keep_their_own_models_and_all_trains_what_it_can(
        tmp_path: Path, mlflow_home: Path) -> None:
    from training.train import train

    events, _ = simulate_log(n_cases=700, seed=5)
    path = _write(events, tmp_path / "north.csv")
    config = TrainConfig(lgbm={"n_estimators": 60}, learning_curve=False)
    north = train(path, _mapping("North Sales", payment=False), "all", config)
    assert set(north.versions) == {"outcome", "remaining_time"}
    assert "payment_delay" in north.skipped and "payment" in north.skipped["payment_delay"]
    south = train(path, _mapping("south", payment=True), "outcome", config)
    client = MlflowClient()
    run = client.get_run(north.run_id)
    assert run.data.tags["l2c.process"] == "North Sales"
    assert run.data.tags["outcome.kind"] in {"lightgbm", "logistic", "stage_rate", "base_rate"}
    assert run.data.tags["outcome.calibration"].split(" ")[0] == (
        north.results[0].bundle.model.calibration_used_)
    assert "skipped.payment_delay" in run.data.tags
    for outcome, name in ((north, "l2c-north-sales-outcome"), (south, "l2c-south-outcome")):
        result = promote("outcome", outcome.run_id, force=True)
        assert result.registered_name == name
        version = client.get_model_version_by_alias(name, "champion")
        assert version.run_id == outcome.run_id
        assert version.tags["kind"] == outcome.results[0].kind
    assert TARGETS["outcome"].model_name("simulator") == "l2c-outcome"  # today's names
    # a server of one process (L2C_PROCESS) serves that process's champion
    from serving.store import ModelStore

    for outcome, process in ((north, "North Sales"), (south, "south")):
        store = ModelStore.for_process(process)
        report = store.reload()
        assert report["outcome"]["loaded"], report
        assert store.snapshot.models["outcome"].run_id == outcome.run_id
        assert store.reload_if_promoted() is None  # it watches that process's champion
    # the cockpit's models page of that server shows and promotes that process's models
    from serving.pages import registry

    south_page = registry.overview("south")
    [shown] = [t for t in south_page["targets"] if t["name"] == "outcome"]
    assert shown["registered_name"] == "l2c-south-outcome"
    assert [v["run_id"] for v in shown["versions"]] == [south.run_id]
    answer = registry.promote_version("outcome", 1, "south")  # judged by the same gate
    assert answer["promoted"] or "l2c-south-outcome version 1" in answer["message"], answer
    north_page = registry.overview("North Sales")
    [shown] = [t for t in north_page["targets"] if t["name"] == "outcome"]
    assert shown["registered_name"] == "l2c-north-sales-outcome"
    assert shown["versions"][0]["run_id"] == north.run_id


def test_target_all_fails_only_when_no_target_can_be_trained(tmp_path: Path) -> None:
    path = no_signal_log(tmp_path / "coin.csv", 300)  # no invoices, no payments
    mapping = _mapping("coin", payment=False)
    with pytest.raises(NotTrainableError, match="payment_delay"):
        prepare_training_data(path, mapping, TrainConfig(), resolve_targets("payment_delay"))
    data = prepare_training_data(path, mapping, TrainConfig(), resolve_targets("all"),
                                 skip_untrainable=True)
    assert "payment_delay" in data.skipped and "outcome" not in data.skipped


def test_runs_log_the_learning_curve_and_score_stability(trained) -> None:
    client = MlflowClient()
    run = client.get_run(trained.run_id)
    for result in trained.results:
        curve = result.learning_curve
        assert [p["percent"] for p in curve][-1] == 100.0 and len(curve) >= 2
        assert [p["cases"] for p in curve] == sorted(p["cases"] for p in curve)
        name = result.target.name
        assert f"plots/{name}_learning_curve.png" in {
            a.path for a in client.list_artifacts(trained.run_id, "plots")}
        history = client.get_metric_history(trained.run_id,
                                            f"{name}.learning_curve.{result.target.main_metric}")
        assert sorted(m.step for m in history) == [int(p["percent"]) for p in curve]
        assert run.data.tags[f"{name}.kind"] == result.kind
    from training.runs import compare_runs

    table = compare_runs(max_runs=20)  # `l2c runs` shows what each run shipped
    column = table[trained.run_id[:12]]
    for result in trained.results:
        assert column[f"{result.target.name}.kind"] == result.kind
    outcome = next(r for r in trained.results if r.target.name == "outcome")
    assert 0 <= outcome.stability["median_jump"] <= outcome.stability["p90_jump"] <= 1
    assert run.data.metrics["outcome.stability.p90_jump"] == pytest.approx(
        outcome.stability["p90_jump"])
