"""Temporal splits: the model is always judged on cases that started after it was trained.

Random splits leak the future (a test case's rep record, the market of next month)
into training. Here cases are ordered by start; the training log is cut at the split
time so that no training event lies after it (the strict protocol of Teinemaa et
al.'s outcome-oriented benchmark). As in that protocol, a training case's label comes
from the whole case: only its events (hence its prefixes and features) are cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TemporalSplit:
    train: pd.DataFrame
    test: pd.DataFrame
    split_time: pd.Timestamp
    too_recent: tuple[str, ...] = ()
    """Cases left out because they started within ``horizon`` of the extraction."""


def case_starts_sorted(events: pd.DataFrame) -> pd.Series:
    """Case start times in start order (ties broken by case id, for determinism)."""
    starts = events.groupby("case_id")["timestamp"].min()
    frame = starts.rename("start").reset_index().sort_values(["start", "case_id"], kind="stable")
    return frame.set_index("case_id")["start"]


@dataclass(frozen=True)
class SplitPoint:
    """Where the cases divide: training cases (in start order), test cases, the split
    time (the first test case's start) and the cases too recent for either."""

    train_cases: pd.Index
    test_cases: pd.Index
    split_time: pd.Timestamp
    too_recent: tuple[str, ...]


def split_point(starts: pd.Series, last_time: pd.Timestamp, test_fraction: float,
                horizon: pd.Timedelta | None) -> SplitPoint:
    """The split of cases by their start (``starts``: case -> start, in start order with
    ties broken as ``case_starts_sorted`` does); one rule for a log in memory and for a
    log summarised partition by partition (the Dask path)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    too_recent: tuple[str, ...] = ()
    if horizon is not None:
        recent = starts > last_time - horizon
        too_recent = tuple(starts.index[recent])
        starts = starts[~recent]
    if len(starts) < 2:
        raise ValueError("a temporal split needs at least two cases old enough to evaluate")
    n_train = min(max(round(len(starts) * (1 - test_fraction)), 1), len(starts) - 1)
    return SplitPoint(train_cases=starts.index[:n_train], test_cases=starts.index[n_train:],
                      split_time=starts.iloc[n_train], too_recent=too_recent)


def case_spans(events: pd.DataFrame, measure_end: list[str],
               decisive: list[str]) -> pd.DataFrame:
    """Per case (in order of first appearance): ``start``, ``end`` (its first
    ``measure_end`` activity) and ``decided`` (its last won or lost activity, the
    ``decisive`` ones), NaT where it has none. A case's own events only, so a partition
    of whole cases gives its cases' rows exactly (the Dask path)."""
    by_case = events.groupby("case_id", sort=False)["timestamp"]
    spans = pd.DataFrame({"start": by_case.min()})
    for name, activities, how in (("end", measure_end, "min"),
                                  ("decided", decisive, "max")):
        hits = events.loc[events["activity"].isin(activities), ["case_id", "timestamp"]]
        spans[name] = hits.groupby("case_id")["timestamp"].agg(how).reindex(spans.index)
    return spans


def horizon_of(spans: pd.DataFrame) -> pd.Timedelta | None:
    """How long a case needs before its labels can be judged: the 95th percentile of
    the time to its end and of the time to its outcome (``case_spans``), the longer one,
    each measured on cases that started in the first half of the log, where even slow
    cases had time to finish (in the second half, only fast ones would count). The
    outcome counts too: where losing takes longer than winning (a fine goes to credit
    collection months after the prompt payers paid), recent cases would otherwise be
    judged on their quick wins alone; with at least 20 such cases."""
    start = spans["start"]
    first_half = start < start.min() + (start.max() - start.min()) / 2
    found = []
    for name in ("end", "decided"):
        took = (spans[name] - start)[first_half].dropna()
        if len(took) >= 20:
            found.append(took.quantile(0.95))
    return max(found) if found else None


def temporal_split(events: pd.DataFrame, test_fraction: float = 0.2,
                   horizon: pd.Timedelta | None = None) -> TemporalSplit:
    """First cases by start train, last ``test_fraction`` test; training cut at the split.

    ``horizon``: cases that started less than this before the last event of the log had
    no time to finish; judging a model on the few that did would favour quick outcomes
    (quick losses, fast payers). They are left out of train and test and listed in
    ``too_recent``. Typically a high quantile of the cycle time.
    """
    point = split_point(case_starts_sorted(events), events["timestamp"].max(), test_fraction,
                        horizon)
    split_time, too_recent = point.split_time, point.too_recent
    in_test = events["case_id"].isin(point.test_cases)
    in_train = events["case_id"].isin(point.train_cases)
    train = events[in_train & (events["timestamp"] < split_time)]
    return TemporalSplit(train=train.copy(), test=events[in_test].copy(),
                         split_time=split_time, too_recent=too_recent)


class TimeOrderedCaseSplit:
    """Cross-validation for tuning: train on earlier cases, validate on the next block.

    Works on a prefix frame with ``case_id``, ``case_start`` and ``prefix_end``: fold i
    trains on prefixes of cases in the first i+1 blocks that end before block i+1 starts,
    and validates on the prefixes of block i+1.
    """

    def __init__(self, n_splits: int = 3) -> None:
        if n_splits < 1:
            raise ValueError("n_splits must be at least 1")
        self.n_splits = n_splits

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        return self.n_splits

    def split(self, X: pd.DataFrame, y: object = None,
              groups: object = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        case_start = X.groupby("case_id")["case_start"].first()
        order = case_start.reset_index().sort_values(["case_start", "case_id"], kind="stable")
        blocks = np.array_split(order["case_id"].to_numpy(), self.n_splits + 1)
        block_of = pd.Series(
            np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)]),
            index=np.concatenate(blocks),
        )
        row_block = X["case_id"].map(block_of).to_numpy()
        prefix_end = X["prefix_end"]
        for i in range(self.n_splits):
            cut = case_start.loc[blocks[i + 1][0]]
            train = np.flatnonzero((row_block <= i) & (prefix_end < cut).to_numpy())
            valid = np.flatnonzero(row_block == i + 1)
            yield train, valid


def case_blocks(frame: pd.DataFrame, fractions: tuple[float, ...]) -> np.ndarray:
    """Block number per prefix row: cases in start order cut into consecutive blocks.

    Used to fit on the earliest cases, stop early on the next ones and calibrate on
    the latest, so every step is judged on cases later than those it learned from.
    """
    starts = frame.groupby("case_id")["case_start"].first().reset_index()
    order = starts.sort_values(["case_start", "case_id"], kind="stable")["case_id"].to_numpy()
    edges = np.round(np.cumsum(fractions) / np.sum(fractions) * len(order)).astype(int)
    block = np.searchsorted(edges, np.arange(len(order)), side="right")
    return frame["case_id"].map(pd.Series(block, index=order)).to_numpy()
