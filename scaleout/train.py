"""Train the three targets on Dask with LightGBM's own Dask estimators.

What runs where, and why:

- ``lightgbm.dask`` fits the trees on every training prefix of every partition (data
  parallel: each worker builds histograms of its rows). It has no early stopping
  (LightGBM issues #4189, #5963), so the number of trees comes from a driver-side run:
  the same model as the single-process path (``WinProbabilityModel`` /
  ``IntervalRegressor``), early-stopped on a seeded sample of training cases
  (``sample_cases``), whose best iteration the Dask fit then uses.
- Baselines the trees boost from (the logistic regression of the win model, the
  payment-delay rule) and the win model's calibration are fitted in that driver run
  on the sample; the trees then boost from that base on every row (``init_score``
  computed per partition). The win model's trees are fitted on all three blocks, as
  the single-process model refits (its calibration, decided before the refit, kept).
- The regressions' trees are fitted on the fit and early-stopping blocks; their
  conformal correction is computed on the whole calibration block, by partition.
- The comparison baselines (stage win rate, logistic regression, historical medians)
  are fitted on the sample and, like the models, evaluated on every test prefix, by
  partition.

The fitted Dask models become local LightGBM models (``to_local()``) inside the same
estimator classes, so the bundle is the same kind as today's and ``l2c serve`` loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.prefixes import sort_key
from models.baselines import (
    LogisticBaseline,
    PaymentDelayBaseline,
    median_remaining_by_last_activity,
    stage_win_rate,
)
from models.bundle import TargetBundle
from models.estimators import IntervalRegressor, WinProbabilityModel
from models.matrix import as_matrix, categorical_positions
from models.metrics import by_bucket, classification_metrics, regression_metrics
from models.targets import Target
from scaleout.build import PrefixPart, ScaledTrainingData
from training.config import TrainConfig
from training.data import NotTrainableError
from training.fit import TargetResult, lgbm_params, regression_base

#: training cases in the driver's run (trees count, baselines, calibration)
SAMPLE_CASES = 20_000


@dataclass
class _Sample:
    X: pd.DataFrame
    y: np.ndarray
    blocks: np.ndarray
    cases: int  # training cases sampled


def _sample_part(part: PrefixPart, target: Target, chosen: set[str] | None, names: list[str]
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    rows = target.rows(part.labels)
    if chosen is not None:
        rows &= part.frame["case_id"].isin(chosen).to_numpy()
    X = part.frame.loc[rows, names].reset_index(drop=True)
    keys = part.frame.loc[rows, ["case_id", "prefix_len"]].reset_index(drop=True)
    return (X, part.labels.loc[rows, target.label].to_numpy(dtype=float), part.blocks[rows],
            keys)


def _sample(data: ScaledTrainingData, target: Target, sample_cases: int,
            seed: int) -> _Sample:
    client = data.log.client
    names = data.pipeline.feature_names_out_
    cases = client.gather([client.submit(_train_cases, p) for p in data.train])
    every = np.concatenate([c for c in cases if len(c)]) if cases else np.zeros(0, dtype=object)
    chosen = None
    if len(every) > sample_cases:
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(np.sort(every.astype(str)), sample_cases, replace=False))
    parts = client.gather([client.submit(_sample_part, p, target, chosen, names)
                           for p in data.train])
    # rows in the whole log's order (case, prefix length): with every case sampled, the
    # driver's run is the single-process fit itself (bagging depends on row order)
    keys = pd.concat([p[3] for p in parts], ignore_index=True)
    order = np.lexsort([keys["prefix_len"].to_numpy(), sort_key(keys["case_id"])])
    X = pd.concat([p[0] for p in parts], ignore_index=True).iloc[order].reset_index(drop=True)
    return _Sample(X=X, y=np.concatenate([p[1] for p in parts])[order],
                   blocks=np.concatenate([p[2] for p in parts])[order],
                   cases=len(chosen) if chosen is not None else len(every))


def _train_cases(part: PrefixPart) -> np.ndarray:
    return pd.unique(part.frame["case_id"].to_numpy())


def _check(sample: _Sample, target: Target) -> None:
    per_block = [int((sample.blocks == b).sum()) for b in range(3)]
    if min(per_block) < 20:
        raise NotTrainableError(
            f"cannot train {target.name}: labelled training prefixes per fold {per_block} in "
            "the driver's sample (need 20 each); raise --sample-cases or check the mapping")
    if target.kind == "classification" and len(set(sample.y.tolist())) < 2:
        raise NotTrainableError(f"cannot train {target.name}: only one outcome class")


def _matrix_part(part: PrefixPart, target: Target, names: list[str], blocks: tuple[int, ...],
                 base: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float matrix, labels and base score of the partition's rows for the Dask fit."""
    rows = target.rows(part.labels) & np.isin(part.blocks, blocks)
    X = part.frame.loc[rows, names]
    M = as_matrix(X)
    y = part.labels.loc[rows, target.label].to_numpy(dtype=float)
    init = np.zeros(len(M)) if base is None else np.asarray(base(X), dtype=float)
    return M, y, init


def _dask_arrays(client: Any, parts: list[Any], width: int) -> tuple[Any, Any, Any]:
    """Dask arrays of (matrix, labels, base scores) over the non-empty partitions."""
    import dask
    import dask.array as da

    lengths = client.gather([client.submit(lambda p: len(p[1]), f) for f in parts])
    kept = [(f, n) for f, n in zip(parts, lengths, strict=True) if n]
    if not kept:
        raise NotTrainableError("no labelled training prefixes in any partition")
    arrays = []
    for i, shape in ((0, (None, width)), (1, (None,)), (2, (None,))):
        chunks = []
        for future, n in kept:
            piece = dask.delayed(lambda t, i=i: t[i])(future)
            chunks.append(da.from_delayed(piece, shape=(n, *shape[1:]), dtype="float64"))
        arrays.append(da.concatenate(chunks, axis=0))
    return arrays[0], arrays[1], arrays[2]


def _fit_dask(client: Any, estimator: Any, parts: list[Any], names: list[str],
              categorical: list[int], width: int, boosted: bool, **params: Any) -> Any:
    """A Dask estimator fitted on the partitions; returned as the local model, with the
    training categories recorded as LightGBM records them from a frame."""
    X, y, init = _dask_arrays(client, parts, width)
    model = estimator(client=client, **params)
    # no base: no init_score, so LightGBM starts from the label's average (median for
    # L1) as the single-process fit does; an init_score of zeros would turn that off
    model.fit(X, y, init_score=init if boosted else None, feature_name=names,
              categorical_feature=categorical)
    return model.to_local()


def _with_categories(local: Any, categories: list[list[object]]) -> Any:
    local.booster_.pandas_categorical = categories
    return local


def _evaluate_part(part: PrefixPart, target: Target, names: list[str], model: Any,
                   baselines: dict[str, Any]) -> pd.DataFrame:
    """Keys, label and every prediction of the partition's labelled test prefixes."""
    rows = target.rows(part.labels)
    frame = part.frame[rows].reset_index(drop=True)
    X = frame[names]
    out = frame[["case_id", "prefix_len", "prefix_end"]].copy()
    out["y"] = part.labels.loc[rows, target.label].to_numpy(dtype=float)
    if not len(out):
        return out
    if target.kind == "classification":
        out["p_win"] = model.predict_proba(X)
        out["raw_p"] = model.raw_proba(X)
        out["base_stage_rate"] = baselines["stage_rate"].predict(X)
        out["base_logreg"] = baselines["logreg"].predict_proba(X)
    else:
        point, lower, upper = model.predict_interval(X)
        out["prediction"], out["lower"], out["upper"] = point, lower, upper
        out["base_historical"] = baselines["historical"].predict(X)
    return out


def _conformal_scores(part: PrefixPart, target: Target, names: list[str],
                      model: IntervalRegressor) -> np.ndarray:
    rows = target.rows(part.labels) & (part.blocks == 2)
    if not rows.any():
        return np.zeros(0)
    X = part.frame.loc[rows, names]
    y = part.labels.loc[rows, target.label].to_numpy(dtype=float)
    lo, hi = model._quantiles(model.matrix(X), model.base_prediction(X))
    return np.maximum(lo - y, y - hi)


def fit_target_scaled(data: ScaledTrainingData, target: Target, config: TrainConfig,
                      sample_cases: int = SAMPLE_CASES,
                      step: Callable[[str], None] = lambda _m: None) -> TargetResult:
    """One target: the driver's run on a sample, the Dask fit on every row, the
    evaluation on every test prefix."""
    import lightgbm.dask as lgb_dask

    client = data.log.client
    pipeline = data.pipeline
    names = list(pipeline.feature_names_out_)
    started = time.perf_counter()
    sample = _sample(data, target, sample_cases, config.seed)
    _check(sample, target)
    X, y, b = sample.X, sample.y, sample.blocks
    folds = [(X[b == k].reset_index(drop=True), y[b == k]) for k in range(3)]
    categorical = categorical_positions(X)
    categories = [list(X.iloc[:, j].cat.categories) for j in categorical]
    width = len(names)
    info: dict[str, Any] = {"sample_cases": sample.cases, "sample_rows": len(X)}
    step(f"{target.name}: choosing the number of trees on a driver sample of "
         f"{len(X):,} prefixes")
    lgbm = lgbm_params(pipeline, config)
    if target.kind == "classification":
        model = WinProbabilityModel(lgbm, config.calibration, config.seed,
                                    base=config.win_base)
        model.fit(*folds[0], *folds[1], *folds[2])
        info["n_trees"] = model.n_trees_
        base = model.base_margin if model.base_ is not None else None
        parts = [client.submit(_matrix_part, p, target, names, (0, 1, 2), base)
                 for p in data.train]
        step(f"{target.name}: lightgbm.dask on every training prefix ({model.n_trees_} trees)")
        params = {**model.params, "n_estimators": model.n_trees_}
        local = _fit_dask(client, lgb_dask.DaskLGBMClassifier, parts, names, categorical,
                          width, base is not None, **params, random_state=config.seed)
        model.model_ = _with_categories(local, categories)
        baselines = {"stage_rate": stage_win_rate().fit(X, y),
                     "logreg": LogisticBaseline(seed=config.seed).fit(X, y)}
    else:
        base_rule, params = regression_base(target)
        model = IntervalRegressor({**params, **lgbm}, config.interval_alpha,
                                  config.seed, base=base_rule)
        model.fit(*folds[0], *folds[1], *folds[2])
        base = model.base_prediction if model.base_ is not None else None
        parts = [client.submit(_matrix_part, p, target, names, (0, 1), base)
                 for p in data.train]
        trees = {}
        for attr, extra in (("model_", {"objective": "l1"}),
                            ("lower_", {"objective": "quantile",
                                        "alpha": model.alpha / 2}),
                            ("upper_", {"objective": "quantile",
                                        "alpha": 1 - model.alpha / 2})):
            n = int(getattr(model, attr).best_iteration_ or model.params["n_estimators"])
            trees[attr] = n
            step(f"{target.name}: lightgbm.dask {extra['objective']} on every training "
                 f"prefix ({n} trees)")
            local = _fit_dask(client, lgb_dask.DaskLGBMRegressor, parts, names, categorical,
                              width, base is not None,
                              **{**model.params, **extra, "n_estimators": n},
                              random_state=config.seed)
            setattr(model, attr, _with_categories(local, categories))
        info["n_trees"] = trees["model_"]
        info["n_trees_quantiles"] = [trees["lower_"], trees["upper_"]]
        step(f"{target.name}: conformal correction on the whole calibration block")
        model_f = client.scatter(model, broadcast=True)
        scores = np.concatenate(client.gather([
            client.submit(_conformal_scores, p, target, names, model_f) for p in data.train]))
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * (1 - model.alpha)) / n) if n else 1.0
        model.correction_ = float(np.quantile(scores, level)) if n else 0.0
        X_train = X
        historical = (median_remaining_by_last_activity() if target.name == "remaining_time"
                      else PaymentDelayBaseline())
        baselines = {"historical": historical.fit(X_train, y)}
    info["train_s"] = time.perf_counter() - started
    step(f"{target.name}: evaluating on every test prefix")
    model_f = client.scatter(model, broadcast=True)
    test = pd.concat(client.gather([
        client.submit(_evaluate_part, p, target, names, model_f, baselines)
        for p in data.test]), ignore_index=True)
    return _result(data, target, config, model, test, info)


def _result(data: ScaledTrainingData, target: Target, config: TrainConfig, model: Any,
            test: pd.DataFrame, info: dict[str, Any]) -> TargetResult:
    if len(test) < 20:
        raise NotTrainableError(f"cannot train {target.name}: {len(test)} labelled test "
                                "prefixes (need 20)")
    y, k = test["y"].to_numpy(), test["prefix_len"].to_numpy()
    if target.kind == "classification":
        p = test["p_win"].to_numpy()
        metrics = classification_metrics(y, p)
        metrics["ece_uncalibrated"] = classification_metrics(y, test["raw_p"].to_numpy())["ece"]
        baselines = {name: classification_metrics(y, test[f"base_{name}"].to_numpy())
                     for name in ("stage_rate", "logreg")}
        buckets = by_bucket(k, classification_metrics, y, p)
        kept = test[["case_id", "prefix_len", "prefix_end", "y", "p_win"]]
    else:
        point, lower, upper = (test[c].to_numpy() for c in ("prediction", "lower", "upper"))
        metrics = regression_metrics(y, point, lower, upper)
        baselines = {"historical": regression_metrics(y, test["base_historical"].to_numpy())}
        buckets = by_bucket(k, regression_metrics, y, point, lower, upper)
        kept = test[["case_id", "prefix_len", "prefix_end", "y", "prediction", "lower",
                     "upper"]]
    bundle = TargetBundle(target_name=target.name, mapping=data.log.mapping,
                          pipeline=data.pipeline, model=model,
                          info={"trained_on": data.fingerprint,
                                "split_time": data.split_time.isoformat(),
                                "metrics": metrics, "config": config.flat_params(),
                                "scaleout": info})
    return TargetResult(target=target, bundle=bundle, metrics=metrics, baselines=baselines,
                        buckets=buckets, oracle={}, test=kept.reset_index(drop=True))

