"""From a log file to the matrices of one training run: read, split, featurise, label.

All of this happens before an MLflow run starts, so a log that cannot be trained on
fails with a clear message and leaves no half-written run behind.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import EventLogError
from features.io import sidecar_path
from features.leakage import LeakFinding, find_leaky_columns
from features.log import EventLog, read_log
from features.mapping import Mapping
from features.pipeline import PrefixPipeline
from features.split import TemporalSplit, case_blocks, case_spans, horizon_of, temporal_split
from models.targets import Target
from training.config import TrainConfig


class NotTrainableError(EventLogError):
    """The log reads, but holds too little labelled history to train a target."""


@dataclass
class TrainingData:
    log: EventLog
    split: TemporalSplit
    pipeline: PrefixPipeline
    train_frame: pd.DataFrame
    train_labels: pd.DataFrame
    test_frame: pd.DataFrame
    test_labels: pd.DataFrame
    fingerprint: dict[str, Any]
    truth: pd.DataFrame | None = None
    blocks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    features_s: float = 0.0  # pipeline fit + transform of the whole log
    #: columns that look known only at the end (features.leakage), with the evidence
    leaks: list[LeakFinding] = field(default_factory=list)
    #: targets that cannot be trained on this log -> why (``--target all`` skips them)
    skipped: dict[str, str] = field(default_factory=dict)
    #: targets trained below their minimum labelled cases (``MIN_CASES``) -> the message
    low_data: dict[str, str] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: str | Path, log: EventLog) -> dict[str, Any]:
    events = log.events
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "cases": int(events["case_id"].nunique()),
        "events": len(events),
        "rows_quarantined": log.report.rows_quarantined,
        "first_event": events["timestamp"].min().isoformat(),
        "last_event": events["timestamp"].max().isoformat(),
    }


def load_truth(path: str | Path) -> pd.DataFrame | None:
    """The simulator's truth beside the log, if there is one (for the oracle)."""
    truth_file = sidecar_path(path, "truth")
    if not truth_file.is_file():
        return None
    truth = pd.read_csv(truth_file)
    return truth.rename(columns={"opportunity_id": "case_id"}).set_index("case_id")


def prepare_training_data(path: str | Path, mapping: Mapping | str | Path | None,
                          config: TrainConfig, targets: list[Target],
                          skip_untrainable: bool = False) -> TrainingData:
    """Read, split in time, fit the feature pipeline on training events, build matrices.

    A target the log cannot train raises ``NotTrainableError``; with
    ``skip_untrainable`` (``--target all``) it is listed in ``skipped`` with the reason
    instead, and only a log that can train none of ``targets`` raises."""
    log = read_log(path, mapping)
    if log.events["case_id"].nunique() < 50:
        raise NotTrainableError(
            f"{path}: only {log.events['case_id'].nunique()} usable case(s) after validation "
            f"({log.report.rows_quarantined} row(s) quarantined: "
            f"{dict(log.report.quarantined)}); at least 50 are needed to train")
    data = build_training_data(log, config, evaluation_horizon(log, config),
                               fingerprint(path, log), load_truth(path))
    for target in targets:
        problem = untrainable_reason(data, target, path)
        if problem is not None:
            data.skipped[target.name] = problem
            continue
        thin = low_data_message(data, target)
        if thin is not None:
            data.low_data[target.name] = thin
    if data.skipped and (not skip_untrainable or len(data.skipped) == len(targets)):
        raise NotTrainableError(" | ".join(data.skipped.values()))
    data.leaks = find_leaky_columns(log.events, log.mapping.roles)
    return data


def build_training_data(log: EventLog, config: TrainConfig, horizon: pd.Timedelta | None,
                        fingerprint: dict[str, Any],
                        truth: pd.DataFrame | None = None) -> TrainingData:
    """Split in time, fit the feature pipeline on training events, build the matrices.

    Shared by ``l2c train`` and the real-log benchmark, which reads its logs itself and
    chooses its own horizon and prefix lengths (``config.max_prefix_len``).
    """
    split = temporal_split(log.events, config.test_fraction, horizon)
    pipeline = PrefixPipeline(roles=log.mapping.roles, max_prefix_len=config.max_prefix_len,
                              thin_after=config.thin_after, thin_step=config.thin_step,
                              min_frequency=config.min_frequency)
    started = time.perf_counter()
    pipeline.fit(split.train)
    # Features are as-of by construction, so prefixes of the whole log that end before
    # the split equal those of the cut log; labels come from the whole case, as in the
    # literature's protocol (training cases are cut, their outcomes are not censored).
    frame = pipeline.transform(log.events)
    features_s = time.perf_counter() - started
    labels = pipeline.labels(log.events)
    test_cases = split.test["case_id"].unique()
    in_test = frame["case_id"].isin(test_cases).to_numpy()
    in_train = ~in_test & (frame["prefix_end"] < split.split_time).to_numpy()
    pipeline.refresh_history(log.events)  # deployment sees the whole extract's history
    train_frame = frame[in_train].reset_index(drop=True)
    return TrainingData(
        log=log, split=split, pipeline=pipeline,
        train_frame=train_frame, train_labels=labels[in_train].reset_index(drop=True),
        test_frame=frame[in_test].reset_index(drop=True),
        test_labels=labels[in_test].reset_index(drop=True),
        fingerprint=fingerprint, truth=truth,
        blocks=case_blocks(train_frame, config.fold_fractions), features_s=features_s,
    )


def evaluation_horizon(log: EventLog, config: TrainConfig) -> pd.Timedelta | None:
    """How long a case needs to finish and be decided: configured, or measured on the
    log (``features.split.horizon_of``: the time to its end and to its outcome)."""
    if config.horizon_days is not None:
        return pd.Timedelta(days=config.horizon_days)
    roles = log.mapping.roles
    return horizon_of(case_spans(log.events, roles.measure_end_activities,
                                 [*roles.won, *roles.lost]))


#: Labelled training cases below which a target's model is flagged "low data": per class
#: for the win model (CRM vendors ask for 200 won and 200 lost (Salesforce), 40 and 40
#: (Dynamics 365), 50 won and 150 lost (Gong); the strictest is used), completed cases for
#: the regressions. Below them the model is still trained and shipped, flagged in the run,
#: the registry, ``l2c train``'s output and the API, since a few hundred cases are often
#: all a small sales team has; promotion shows the flag too.
MIN_CASES: dict[str, dict[str, int]] = {
    "outcome": {"won": 200, "lost": 200},
    "remaining_time": {"completed": 200},
    "payment_delay": {"paid": 200},
}


def labelled_case_counts(data: TrainingData, target: Target) -> dict[str, int]:
    """Labelled training cases per class (win/loss) or in all (regressions)."""
    rows = target.rows(data.train_labels)
    cases = data.train_frame.loc[rows, "case_id"]
    if target.kind == "classification":
        won = data.train_labels.loc[rows, target.label].to_numpy(dtype=float) == 1
        return {"won": int(cases[won].nunique()), "lost": int(cases[~won].nunique())}
    key = next(iter(MIN_CASES[target.name]))
    return {key: int(cases.nunique())}


def low_data_message(data: TrainingData, target: Target) -> str | None:
    """The "low data" message with the counts, or None when there are enough cases."""
    counts = labelled_case_counts(data, target)
    wanted = MIN_CASES[target.name]
    short = {k: (counts[k], n) for k, n in wanted.items() if counts[k] < n}
    if not short:
        return None
    have = ", ".join(f"{counts[k]} {k}" for k in wanted)
    need = ", ".join(f"{n} {k}" for k, n in wanted.items())
    return (f"low data: {target.name} was trained on {have} labelled training case(s); "
            f"at least {need} are needed for a model to be trusted. Treat its figures "
            "as rough and retrain when more history is available")


def untrainable_reason(data: TrainingData, target: Target, path: str | Path) -> str | None:
    """Why this log cannot train ``target`` at all, or None."""
    try:
        _check_enough_labels(data, target, path)
    except NotTrainableError as exc:
        return str(exc)
    return None


def _check_enough_labels(data: TrainingData, target: Target, path: str | Path) -> None:
    train_rows = target.rows(data.train_labels)
    test_rows = target.rows(data.test_labels)
    per_block = [int((train_rows & (data.blocks == b)).sum()) for b in range(3)]
    problems = []
    if min(per_block) < 20:
        problems.append(f"labelled training prefixes per fold {per_block} (need 20 each)")
    if test_rows.sum() < 20:
        problems.append(f"{int(test_rows.sum())} labelled test prefixes (need 20)")
    if target.kind == "classification":
        y = data.train_labels.loc[train_rows, target.label]
        if y.nunique() < 2:
            problems.append("only one outcome class among training prefixes")
    if problems:
        raise NotTrainableError(
            f"{path}: cannot train {target.name}: {'; '.join(problems)}. Check the mapping's "
            "roles (won/lost/invoice/payment activities) and the log's time span")
