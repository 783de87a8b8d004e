"""Fit one target's model and its baselines, and evaluate both on the temporal test set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.pipeline import PrefixPipeline
from models.baselines import (
    LogisticBaseline,
    PaymentDelayBaseline,
    RateBaseline,
    median_remaining_by_last_activity,
    stage_win_rate,
)
from models.bundle import TargetBundle
from models.estimators import IntervalRegressor, WinProbabilityModel
from models.metrics import (
    by_bucket,
    classification_metrics,
    ece_sampling_floor,
    regression_metrics,
)
from models.selection import BASELINE_KINDS, kind_label
from models.targets import Target
from training.config import TrainConfig
from training.data import TrainingData


@dataclass
class TargetResult:
    target: Target
    bundle: TargetBundle
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    buckets: dict[str, dict[str, float]]
    oracle: dict[str, float] = field(default_factory=dict)
    test: pd.DataFrame = field(default_factory=pd.DataFrame)  # keys, label, predictions
    #: what was shipped ('lightgbm', 'logistic', 'stage_rate', ...) and why
    kind: str = "lightgbm"
    kind_reason: str = ""
    #: candidates' metrics on the latest training block, which chose ``kind``
    selection: dict[str, dict[str, float]] = field(default_factory=dict)
    #: how jumpy the win probability is between a case's consecutive events (test cases)
    stability: dict[str, float] = field(default_factory=dict)
    #: below the minimum labelled cases (``training.data.MIN_CASES``): the message
    low_data: str | None = None
    learning_curve: list[dict[str, float]] = field(default_factory=list)

    def flat_metrics(self) -> dict[str, float]:
        """All figures under ``<target>.`` names, as logged to MLflow."""
        name = self.target.name
        flat = {f"{name}.{k}": v for k, v in self.metrics.items()}
        for baseline, values in self.baselines.items():
            flat.update({f"{name}.baseline_{baseline}.{k}": v for k, v in values.items()})
        for bucket, values in self.buckets.items():
            flat.update({f"{name}.prefix_{bucket}.{k}": v for k, v in values.items()})
        flat.update({f"{name}.oracle.{k}": v for k, v in self.oracle.items()})
        for kind, values in self.selection.items():
            flat.update({f"{name}.selection_{kind}.{k}": v for k, v in values.items()})
        flat.update({f"{name}.stability.{k}": v for k, v in self.stability.items()})
        return {k: float(v) for k, v in flat.items() if v is not None and np.isfinite(v)}


def _folds(data: TrainingData, target: Target) -> list[tuple[pd.DataFrame, np.ndarray]]:
    rows = target.rows(data.train_labels)
    X = data.pipeline.feature_matrix(data.train_frame)
    y = data.train_labels[target.label].to_numpy(dtype=float)
    return [(X[rows & (data.blocks == b)], y[rows & (data.blocks == b)]) for b in range(3)]


def lgbm_params(pipeline: PrefixPipeline, config: TrainConfig) -> dict[str, Any]:
    """LightGBM overrides for the feature matrix of ``pipeline``
    (``TrainConfig.lgbm_params``); the Dask fit asks the same."""
    return config.lgbm_params(pipeline.feature_names_out_, pipeline.summary_names())


def fit_target(data: TrainingData, target: Target, config: TrainConfig) -> TargetResult:
    (X_fit, y_fit), (X_valid, y_valid), (X_cal, y_cal) = _folds(data, target)
    lgbm = lgbm_params(data.pipeline, config)
    test_rows = target.rows(data.test_labels)
    test_frame = data.test_frame[test_rows].reset_index(drop=True)
    X_test = data.pipeline.feature_matrix(test_frame)
    y_test = data.test_labels.loc[test_rows, target.label].to_numpy(dtype=float)
    k_test = test_frame["prefix_len"].to_numpy()
    X_train = pd.concat([X_fit, X_valid, X_cal])
    y_train = np.concatenate([y_fit, y_valid, y_cal])

    if target.kind == "classification":
        # boosts from a logistic regression, then refits on all blocks (WinProbabilityModel)
        model = WinProbabilityModel(lgbm, config.calibration, config.seed,
                                    base=config.win_base, select=config.select_kind)
        model.fit(X_fit, y_fit.astype(int), X_valid, y_valid.astype(int), X_cal, y_cal.astype(int))
        p = model.predict_proba(X_test)
        metrics = classification_metrics(y_test, p)
        metrics["ece_uncalibrated"] = classification_metrics(y_test, model.raw_proba(X_test))["ece"]
        metrics["ece_sampling_floor"] = ece_sampling_floor(p, test_frame["case_id"].to_numpy())
        baselines = {
            "stage_rate": classification_metrics(
                y_test, stage_win_rate().fit(X_train, y_train).predict(X_test)),
            "logreg": classification_metrics(
                y_test, LogisticBaseline(seed=config.seed).fit(X_train, y_train)
                .predict_proba(X_test)),
            "base_rate": classification_metrics(
                y_test, RateBaseline(preferred=()).fit(X_train, y_train).predict_proba(X_test)),
        }
        buckets = by_bucket(k_test, classification_metrics, y_test, p)
        test = test_frame[["case_id", "prefix_len", "prefix_end"]].assign(y=y_test, p_win=p)
        stability = score_stability(test)
        oracle = _outcome_oracle(data, test_frame, y_test, metrics)
        p_oracle = oracle.pop("_p", None)
        if p_oracle is not None:  # per prefix, for figures by prefix length (benchmarks)
            test["p_oracle"] = p_oracle
    else:
        # payment delay boosts from the account's past delay, which trees only approximate
        # by many small steps (remaining time has no such dominant feature)
        base, params = regression_base(target)
        fallbacks = ({regression_baseline_kind(target): regression_baseline(target)}
                     if config.select_kind else {})
        model = IntervalRegressor({**params, **lgbm}, config.interval_alpha, config.seed,
                                  base=base, fallbacks=fallbacks)
        model.fit(X_fit, y_fit, X_valid, y_valid, X_cal, y_cal)
        point, lower, upper = model.predict_interval(X_test)
        metrics = regression_metrics(y_test, point, lower, upper)
        baselines = {"historical": regression_metrics(
            y_test, regression_baseline(target).fit(X_train, y_train).predict(X_test))}
        stability = {}
        buckets = by_bucket(k_test, regression_metrics, y_test, point, lower, upper)
        test = test_frame[["case_id", "prefix_len", "prefix_end"]].assign(
            y=y_test, prediction=point, lower=lower, upper=upper)
        oracle = _payment_oracle(data, test_frame, y_test, metrics, target)

    curve = (learning_curve(target, config, (X_fit, y_fit), (X_valid, y_valid), (X_cal, y_cal),
                            X_test, y_test, metrics[target.main_metric], data)
             if config.learning_curve else [])
    choice = getattr(model, "choice_", None)
    kind = getattr(model, "kind_", "lightgbm")
    reason = choice.reason if choice is not None else "LightGBM (no comparison asked for)"
    low_data = data.low_data.get(target.name)
    bundle = TargetBundle(target_name=target.name, mapping=data.log.mapping,
                          pipeline=data.pipeline, model=model,
                          info={"example_events": _example_events(data),
                                "trained_on": data.fingerprint,
                                "split_time": data.split.split_time.isoformat(),
                                "metrics": metrics, "config": config.flat_params(),
                                "test_baselines": baselines,
                                "kind": kind, "kind_label": kind_label(kind),
                                "kind_is_baseline": kind in BASELINE_KINDS,
                                "kind_reason": reason, "low_data": low_data,
                                "registered_name": target.model_name(config.process),
                                "process": config.process})
    return TargetResult(target=target, bundle=bundle, metrics=metrics, baselines=baselines,
                        buckets=buckets, oracle=oracle, test=test, kind=kind,
                        kind_reason=reason,
                        selection=choice.scores if choice is not None else {},
                        stability=stability, low_data=low_data, learning_curve=curve)


#: shares of the training cases the learning curve trains on (1.0 is the model itself)
CURVE_SHARES = (0.1, 0.25, 0.5)


def learning_curve(target: Target, config: TrainConfig, *folds_and_test: Any) -> list[dict]:
    """The test metric of the LightGBM model trained on 10, 25 and 50% of the training
    cases (drawn at random within each block, so early stopping and calibration still see
    later cases), and of the shipped model on all of them: a curve still rising at 100%
    says more data would help; a flat one, that the log holds what it holds."""
    (fit, valid, cal, X_test, y_test, full_metric, data) = folds_and_test
    rows = target.rows(data.train_labels)
    cases = data.train_frame.loc[rows, "case_id"].to_numpy()
    unique = pd.unique(cases)
    order = pd.Series(np.random.default_rng(config.seed).permutation(len(unique)), index=unique)
    rank = order.reindex(cases).to_numpy() / max(len(unique), 1)
    block_of = data.blocks[rows]
    ranks = [rank[block_of == b] for b in range(3)]
    lgbm = lgbm_params(data.pipeline, config)
    points = []
    for share in CURVE_SHARES:
        picked = [(X[r < share], y[r < share]) for (X, y), r in zip((fit, valid, cal), ranks,
                                                                      strict=True)]
        if min(len(y) for _, y in picked) < 20 or (
                target.kind == "classification" and len(set(picked[0][1])) < 2):
            continue
        if target.kind == "classification":
            args = [a for X, y in picked for a in (X, y.astype(int))]
            model = WinProbabilityModel(lgbm, config.calibration, config.seed,
                                        base=config.win_base, select=False).fit(*args)
            value = classification_metrics(y_test, model.predict_proba(X_test))[
                target.main_metric]
        else:
            base, params = regression_base(target)
            args = [a for X, y in picked for a in (X, y)]
            model = IntervalRegressor({**params, **lgbm}, config.interval_alpha,
                                      config.seed, base=base).fit(*args)
            value = regression_metrics(y_test, model.predict(X_test))[target.main_metric]
        points.append({"percent": share * 100, "cases": int(pd.unique(cases[rank < share]
                                                                    ).size),
                       "metric": float(value)})
    points.append({"percent": 100.0, "cases": len(unique), "metric": float(full_metric)})
    return points


def regression_baseline(target: Target) -> PaymentDelayBaseline | Any:
    """What users have today for a regression target (the model must beat it)."""
    if target.name == "remaining_time":
        return median_remaining_by_last_activity()
    return PaymentDelayBaseline()


def regression_baseline_kind(target: Target) -> str:
    return ("median_by_last_activity" if target.name == "remaining_time"
            else "account_terms_mean")


def score_stability(test: pd.DataFrame) -> dict[str, float]:
    """The median and 90th percentile jump of a case's win probability from one event to
    the next (test cases): a forecast that swings on every event is not trusted, even
    when its ranking is good. Reported, not optimised."""
    ordered = test.sort_values(["case_id", "prefix_len"])
    jumps = ordered.groupby("case_id", sort=False)["p_win"].diff().abs().dropna()
    if jumps.empty:
        return {}
    return {"median_jump": float(jumps.median()), "p90_jump": float(jumps.quantile(0.9)),
            "transitions": float(len(jumps))}


def regression_base(target: Target) -> tuple[PaymentDelayBaseline | None, dict[str, Any]]:
    """The baseline a regression boosts from (fitted on the fit block only), if any, and
    LightGBM defaults for its corrections (``config.lgbm`` still overrides them).

    Payment delay starts from the account's past delay, else the mean of its terms and
    region; the corrections are small and learnt from few accounts, hence smaller steps.
    """
    if target.name == "payment_delay":
        return PaymentDelayBaseline(by=("payment_terms_days", "region")), {"learning_rate": 0.05}
    return None, {}


def _example_events(data: TrainingData) -> pd.DataFrame:
    """A few test cases' events kept in the bundle to check it before serving."""
    cases = data.split.test["case_id"].drop_duplicates().head(3)
    return data.log.events[data.log.events["case_id"].isin(cases)].reset_index(drop=True)


def _outcome_oracle(data: TrainingData, frame: pd.DataFrame, y: np.ndarray,
                    metrics: dict[str, float]) -> dict[str, Any]:
    """The simulator's true P(win | furthest stage reached) on the same test prefixes."""
    stages = data.log.mapping.roles.stage_order
    if data.truth is None or "max_stage_index" not in frame or not stages:
        return {}
    reached = frame["max_stage_index"].fillna(0).clip(1, len(stages) - 1).astype(int)
    column = "p_win_from_" + pd.Series(stages).str.lower().to_numpy()[reached]
    truth = data.truth.reindex(frame["case_id"])
    if truth.isna().all(axis=None):
        return {}
    p = truth.to_numpy()[np.arange(len(frame)), truth.columns.get_indexer(column)]
    oracle: dict[str, Any] = classification_metrics(y, p.astype(float))
    oracle["auc_ratio"] = metrics["auc"] / oracle["auc"]
    oracle["_p"] = p.astype(float)  # taken out by fit_target
    return oracle


def _payment_oracle(data: TrainingData, frame: pd.DataFrame, y: np.ndarray,
                    metrics: dict[str, float], target: Target) -> dict[str, Any]:
    """The simulator's expected payment delay (no noise) on the same test prefixes."""
    if (data.truth is None or target.name != "payment_delay"
            or "expected_payment_delay_days" not in data.truth):
        return {}
    expected = data.truth["expected_payment_delay_days"].reindex(frame["case_id"]).to_numpy()
    known = ~np.isnan(expected)
    if known.sum() < 20:
        return {}
    oracle = regression_metrics(y[known], expected[known])
    oracle["mae_ratio"] = metrics["mae_days"] / oracle["mae_days"]
    return oracle
