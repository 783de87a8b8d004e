"""``l2c train LOG --cluster local:N`` end to end: read, featurise and train on Dask,
then log one MLflow run of the same kind as the single-process path's.

The run holds the same artifacts, and the registered models are the same bundles
(servable by ``l2c serve``). Two things are a sample, and the run says so in its
tags: the events logged as the run's dataset and evaluation set (the events of up to
``EVALUATION_CASES`` test cases, which promotion scores models on), and the test
prefixes of the SHAP and calibration plots. The metrics are computed on every test
prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Mapping
from features.split import TemporalSplit
from scaleout.build import PrefixPart, ScaledTrainingData, build_scaled_training_data
from scaleout.cluster import ClusterSpec, announce_cluster, dask_client
from scaleout.input import read_partitioned
from scaleout.train import SAMPLE_CASES, fit_target_scaled
from training.config import TrainConfig
from training.data import NotTrainableError, TrainingData
from training.train import TrainingOutcome

#: test cases whose events are logged with the run (promotion's evaluation set)
EVALUATION_CASES = 2000


def _events_of(events: pd.DataFrame, cases: set[str]) -> pd.DataFrame:
    return events[events["case_id"].isin(cases).to_numpy()]


def _prefixes_of(part: PrefixPart, cases: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = part.frame["case_id"].isin(cases).to_numpy()
    return part.frame[rows], part.labels[rows]


def logged_data(data: ScaledTrainingData, seed: int) -> TrainingData:
    """What ``training.tracking.log_training_run`` reads, with the events and test
    prefixes of a seeded sample of test cases in place of the whole log's."""
    client = data.log.client
    rng = np.random.default_rng(seed)
    test_cases = np.asarray(data.test_cases, dtype=object)
    if len(test_cases) > EVALUATION_CASES:
        test_cases = np.sort(rng.choice(test_cases, EVALUATION_CASES, replace=False))
    chosen = set(test_cases.tolist())
    events = pd.concat(client.gather(data.log.map(_events_of, chosen)), ignore_index=True)
    events = events.sort_values(["case_id", "timestamp", "source_row"],
                                kind="stable").reset_index(drop=True)
    pairs = client.gather([client.submit(_prefixes_of, p, chosen) for p in data.test])
    test_frame = pd.concat([p[0] for p in pairs], ignore_index=True)
    test_labels = pd.concat([p[1] for p in pairs], ignore_index=True)
    log = EventLog(events, quarantine=pd.DataFrame(), report=data.log.report,
                   mapping=data.log.mapping)
    split = TemporalSplit(train=events.iloc[:0], test=events, split_time=data.split_time,
                          too_recent=data.too_recent)
    return TrainingData(log=log, split=split, pipeline=data.pipeline,
                        train_frame=test_frame.iloc[:0], train_labels=test_labels.iloc[:0],
                        test_frame=test_frame, test_labels=test_labels,
                        fingerprint=data.fingerprint, features_s=data.features_s)


def train_on_cluster(log: str | Path, mapping: str | Path | Mapping | None, target: str,
                     config: TrainConfig, spec: ClusterSpec, *,
                     partitions: int | None = None, sample_cases: int = SAMPLE_CASES,
                     fit_cases: int | None = None, store: str | Path | None = None,
                     progress: Callable[[str], None] | None = None,
                     announce: Callable[[str], None] | None = None) -> TrainingOutcome:
    """Like ``training.train.train``, on a Dask cluster; the MLflow run opens only after
    everything is fitted, so a failure leaves no half-written run."""
    from models.registry import configure_mlflow
    from models.targets import resolve_targets
    from training.tracking import log_training_run

    step = progress or (lambda _m: None)
    targets = resolve_targets(target)
    with dask_client(spec) as client:
        announce_cluster(client, announce)
        step("reading, shuffling by case and validating the log")
        scaled_log = read_partitioned(log, client, mapping, partitions=partitions,
                                      store=store)
        data = build_scaled_training_data(scaled_log, config, fit_cases=fit_cases,
                                          progress=step)
        if data.fingerprint["cases"] < 50:
            raise NotTrainableError(f"{log}: only {data.fingerprint['cases']} usable case(s) "
                                    "after validation; at least 50 are needed to train")
        results = [fit_target_scaled(data, t, config, sample_cases, step) for t in targets]
        step("gathering the evaluation sample")
        logged = logged_data(data, config.seed)
        examples = logged.split.test["case_id"].drop_duplicates().head(3)
        for result in results:
            result.bundle.info["example_events"] = logged.log.events[
                logged.log.events["case_id"].isin(examples)].reset_index(drop=True)
    step("logging to MLflow")
    uri = configure_mlflow()
    mapping_file = mapping if isinstance(mapping, str | Path) else None
    run_id, versions = log_training_run(logged, results, config, mapping_file)
    _tag_run(run_id, data, logged, results, spec)
    return TrainingOutcome(run_id=run_id, versions=versions, results=results, data=logged,
                           tracking_uri=uri)


def _tag_run(run_id: str, data: ScaledTrainingData, logged: TrainingData,
             results: list[Any], spec: ClusterSpec) -> None:
    """What differs from a single-process run, said on the run itself."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    tags = {
        "scaleout": "dask",
        "scaleout.cluster": spec.address or f"local:{spec.workers}",
        "scaleout.partitions": str(len(data.log.parts)),
        "scaleout.pipeline_fit_cases": str(data.fit_cases),
        "scaleout.evaluation_cases_logged": str(logged.split.test["case_id"].nunique()),
        "scaleout.test_cases": str(len(data.test_cases)),
    }
    for result in results:
        info = result.bundle.info["scaleout"]
        name = result.target.name
        tags[f"scaleout.{name}.sample_cases"] = str(info["sample_cases"])
        tags[f"scaleout.{name}.n_trees"] = str(info["n_trees"])
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for key, value in data.timings.items():
        client.log_metric(run_id, f"scaleout.{key}", float(value))


def score_log(log: str | Path, mapping: str | Path | Mapping | None, bundles: list[Any],
              spec: ClusterSpec | None, *, partitions: int | None = None,
              announce: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, Any]:
    """Every open case of ``log`` scored by ``bundles``: on Dask when ``spec`` is given,
    else in this process. Returns the scores and the log's validation report."""
    from features.log import read_log
    from scaleout.score import score_in_process, score_open_cases

    if spec is None:
        read = read_log(log, mapping)
        return score_in_process(read.events, bundles), read.report
    with dask_client(spec) as client:
        announce_cluster(client, announce)
        scaled = read_partitioned(log, client, mapping, partitions=partitions)
        return score_open_cases(scaled, bundles), scaled.report
