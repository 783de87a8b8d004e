"""Training data at scale: split, fit the pipeline, featurise and label every partition.

The same protocol as ``training.data.build_training_data``, with the whole log never
in one process:

1. each partition sends a summary per case (start, first end); the driver splits in
   time from it (``temporal_split``'s rule) and chooses the evaluation horizon;
2. the driver fits the ``PrefixPipeline`` (categories, vocabularies) on the training
   cut, gathered from the partitions: the whole cut by default, which makes the
   features equal to the single-process ones, or the cut of a seeded sample of
   training cases (``fit_cases``) when the cut does not fit in the driver;
3. each partition sends its cases' cross-case facts; the driver joins them into the
   whole log's history, which the trained bundle keeps (no worker receives it);
4. the cross-case lookups are joined by key (``scaleout.history``), and each partition
   builds its prefixes' features and labels and keeps them, split into training
   prefixes (with their fold block) and test prefixes, on its worker.

Each partition gets the split role of its own cases only (a slice of the driver's
per-case table, never the whole of it) and the pipeline without history: nothing a
worker is given grows with the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.crosscase import CaseFacts
from features.mapping import Roles
from features.pipeline import PrefixPipeline
from features.prefixes import sort_key
from features.split import case_spans, horizon_of, split_point
from scaleout.history import join_facts, partition_facts
from scaleout.input import OnEvents, PartitionedLog
from scaleout.prefixes import cross_case_answers, for_workers, transform_partition, with_history
from training.config import TrainConfig

#: role of a case in the split: training blocks 0..2, test, or neither (too recent)
TEST, NEITHER = 100, -1


@dataclass
class PrefixPart:
    """One partition's prefixes: keys and features, labels row by row, fold blocks."""

    frame: pd.DataFrame
    labels: pd.DataFrame
    blocks: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class ScaledTrainingData:
    log: PartitionedLog
    pipeline: PrefixPipeline  # fitted on the training cut; history: the whole log
    split_time: pd.Timestamp
    test_cases: list[str]
    too_recent: tuple[str, ...]
    train: list[Any]  # futures of PrefixPart
    test: list[Any]
    fingerprint: dict[str, Any]
    extraction_time: pd.Timestamp
    fit_cases: int  # training cases the pipeline was fitted on
    features_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def _case_summary(events: pd.DataFrame, measure_end: list[str],
                  decisive: list[str]) -> pd.DataFrame:
    """Per case: first event, first end event and last won or lost event (NaT if none;
    ``features.split.case_spans``), event count, last event."""
    summary = case_spans(events, measure_end, decisive)
    by_case = events.groupby("case_id", sort=False)["timestamp"]
    summary["events"] = by_case.size()
    summary["last"] = by_case.max()
    return summary


def evaluation_horizon(summary: pd.DataFrame, config: TrainConfig) -> pd.Timedelta | None:
    """``training.data.evaluation_horizon`` from the per-case summary."""
    if config.horizon_days is not None:
        return pd.Timedelta(days=config.horizon_days)
    return horizon_of(summary)


def split_cases(summary: pd.DataFrame, test_fraction: float, horizon: pd.Timedelta | None,
                fold_fractions: tuple[float, ...]) -> tuple[pd.Timestamp, pd.Series, tuple]:
    """``temporal_split`` and ``case_blocks`` from the summary: the split time, and per
    case its role (block 0..2 of the training prefixes, TEST, or NEITHER)."""
    frame = summary["start"].rename("start").reset_index()
    frame["key"] = sort_key(frame["case_id"])
    starts = frame.sort_values(["start", "key"], kind="stable").set_index("case_id")["start"]
    point = split_point(starts, summary["last"].max(), test_fraction, horizon)
    split_time, too_recent = point.split_time, point.too_recent
    role = pd.Series(NEITHER, index=summary.index, dtype="int64")
    role[point.test_cases] = TEST
    # training prefixes are those ending before the split: cases that started before it,
    # cut into blocks in start order (``case_blocks``)
    in_frame = starts[point.train_cases]
    in_frame = in_frame[in_frame < split_time]
    edges = np.round(np.cumsum(fold_fractions) / np.sum(fold_fractions)
                     * len(in_frame)).astype(int)
    role[in_frame.index] = np.searchsorted(edges, np.arange(len(in_frame)), side="right")
    return split_time, role, too_recent


def _training_cut(events: pd.DataFrame, role: pd.Series, split_time: pd.Timestamp,
                  chosen: set[str] | None) -> pd.DataFrame:
    """The partition's events of training cases before the split (``split.train``):
    cases of the training blocks (those that started before the split; one that
    started at it has no event before it)."""
    cases = events["case_id"]
    mine = role.reindex(pd.Index(pd.unique(cases)))
    train_cases = mine.index[(mine >= 0) & (mine != TEST)]
    keep = cases.isin(train_cases) & (events["timestamp"] < split_time)
    if chosen is not None:
        keep &= cases.isin(chosen)
    return events[keep.to_numpy()]


def _prefix_parts(pipeline: PrefixPipeline, events: pd.DataFrame, role: pd.Series,
                  split_time: pd.Timestamp, extraction_time: pd.Timestamp, *answers: Any
                  ) -> tuple[PrefixPart, PrefixPart]:
    """Training and test prefixes of one partition, as ``build_training_data`` cuts
    them; ``role``: the split role of the partition's cases; ``answers``: the key
    buckets' cross-case answers to its prefixes."""
    frame = transform_partition(pipeline, events, False, *answers)
    labels = pipeline.labels(events, extraction_time)
    case_role = role.reindex(frame["case_id"].to_numpy()).to_numpy()
    in_test = case_role == TEST
    in_train = ~in_test & (frame["prefix_end"] < split_time).to_numpy()
    blocks = case_role[in_train]
    return (PrefixPart(frame[in_train].reset_index(drop=True),
                       labels[in_train].reset_index(drop=True), blocks.astype("int64")),
            PrefixPart(frame[in_test].reset_index(drop=True),
                       labels[in_test].reset_index(drop=True), np.zeros(0, dtype="int64")))


def _prefix_rows(pipeline: PrefixPipeline, events: pd.DataFrame, role: pd.Series,
                 split_time: pd.Timestamp, extraction_time: pd.Timestamp, *answers: Any
                 ) -> int:
    train, test = _prefix_parts(pipeline, events, role, split_time, extraction_time,
                                *answers)
    return len(train) + len(test)


def _item(values: tuple, i: int) -> Any:
    return values[i]


def build_scaled_training_data(log: PartitionedLog, config: TrainConfig,
                               fit_cases: int | None = None, progress: Any = None,
                               keep_prefixes: bool = True) -> ScaledTrainingData:
    """Split, fit the pipeline on the driver, featurise and label on the workers.

    ``keep_prefixes=False`` builds every partition's prefixes and labels and drops them
    (``timings["prefix_rows"]`` counts them): what the scale benchmark measures.
    """
    client = log.client
    step = progress or (lambda _m: None)
    roles: Roles = log.mapping.roles
    timings: dict[str, float] = {}
    started = time.perf_counter()
    step("summarising cases per partition")
    summaries = client.gather(log.map(_case_summary, roles.measure_end_activities,
                                      [*roles.won, *roles.lost]))
    summary = pd.concat(summaries)
    horizon = evaluation_horizon(summary, config)
    split_time, role, too_recent = split_cases(summary, config.test_fraction, horizon,
                                               config.fold_fractions)
    extraction_time = summary["last"].max()
    timings["summary_s"] = time.perf_counter() - started

    step("fitting the feature pipeline on the training cut")
    t0 = time.perf_counter()
    train_cases = role.index[(role >= 0) & (role != TEST)]
    chosen = None
    if fit_cases is not None and fit_cases < len(train_cases):
        rng = np.random.default_rng(config.seed)
        chosen = set(rng.choice(np.asarray(train_cases, dtype=object), fit_cases,
                                replace=False).tolist())
    # each partition's own cases' roles (the summaries came from the partitions)
    roles_f = client.scatter([role.reindex(part.index) for part in summaries])
    del summaries
    cut = pd.concat(client.gather(log.map_each(_training_cut, roles_f, split_time, chosen)),
                    ignore_index=True)
    pipeline = PrefixPipeline(roles=roles, max_prefix_len=config.max_prefix_len,
                              thin_after=config.thin_after, thin_step=config.thin_step,
                              min_frequency=config.min_frequency).fit(cut)
    fitted_on = int(cut["case_id"].nunique())
    del cut
    timings["fit_s"] = time.perf_counter() - t0

    step("joining the cross-case history of every partition")
    t0 = time.perf_counter()
    facts: list[CaseFacts] = client.gather(log.map(partition_facts, roles))
    fitted, pipeline = pipeline, with_history(pipeline, join_facts(facts))
    del facts
    timings["history_s"] = time.perf_counter() - t0

    step("building prefix features and labels per partition")
    t0 = time.perf_counter()
    pipe_f = client.scatter(for_workers(fitted), broadcast=True)
    answers = cross_case_answers(client, log.parts, fitted, pipe_f, store=log.store)
    fn = OnEvents(_prefix_parts if keep_prefixes else _prefix_rows, 1)
    done = [client.submit(fn, pipe_f, part, role_i, split_time, extraction_time, *answers_i)
            for part, role_i, answers_i in zip(log.parts, roles_f, answers, strict=True)]
    del answers
    if keep_prefixes:
        train = [client.submit(_item, p, 0) for p in done]
        test = [client.submit(_item, p, 1) for p in done]
        del done
        timings["prefix_rows"] = float(sum(client.gather(client.map(len, train + test))))
    else:  # built, counted and dropped (the benchmark of the feature step)
        timings["prefix_rows"] = float(sum(client.gather(done)))
        train, test = [], []
    timings["features_s"] = time.perf_counter() - t0
    fingerprint = {
        "path": log.source, "sha256": log.sha256, "cases": len(summary),
        "events": int(summary["events"].sum()),
        "rows_quarantined": log.report.rows_quarantined,
        "first_event": summary["start"].min().isoformat(),
        "last_event": extraction_time.isoformat(),
        "partitions": len(log.parts),
    }
    return ScaledTrainingData(
        log=log, pipeline=pipeline, split_time=split_time,
        test_cases=sorted(role.index[role == TEST].tolist()), too_recent=too_recent,
        train=train, test=test, fingerprint=fingerprint, extraction_time=extraction_time,
        fit_cases=fitted_on, features_s=timings["fit_s"] + timings["history_s"]
        + timings["features_s"], timings=timings)


def featurize(client: Any, parts: list[Any], pipeline: PrefixPipeline,
              last_only: bool = False, store: str | None = None) -> list[Any]:
    """Futures of each partition's prefix features, cross-case features as of each
    prefix's end over the cases of every partition (joined by key), the pipeline's
    fitted categories and vocabularies kept."""
    worker = client.scatter(for_workers(pipeline), broadcast=True)
    answers = cross_case_answers(client, parts, pipeline, worker, last_only, store)
    return [client.submit(OnEvents(transform_partition, 1), worker, part, last_only, *a)
            for part, a in zip(parts, answers, strict=True)]
