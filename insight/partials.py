"""Sections as per-partition partials and one combine: the same code in one process and on Dask.

A section that can be split is computed in two steps: a *partial* on the ``Context`` of
some whole cases (every figure that adds up across cases: counts, distinct cases, sums
of integer microseconds, keyed by activity or stage *name*, since each partition codes
its activities its own way), and a *combine* that adds the partials up and builds the
section's tables. Medians and P90s are exact only over all of a group's values, so a
partial also carries its values (``GroupValues``); a ``Runner`` brings each group's
values of every partition together (in one process: there is one partition; on Dask:
each group's values are sent to one bucket on a worker) and returns their statistics.

Sums of days are summed as integer microseconds and divided once (``days_of``): a
float sum would depend on the order of its terms, so partitions summed apart and then
added would differ in the last bit from one sum over the whole log.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from insight.context import MICROS_PER_DAY, Context, grouped_stats

#: microseconds per day as an integer: integer sums divided by it are rounded once
MICROS_PER_DAY_INT = 86_400_000_000
#: a sum of microseconds is kept as two int64 sums (high and low bits): neither
#: overflows for any realistic number of values, whatever their order
_LOW_BITS = 24
_LOW_MASK = (1 << _LOW_BITS) - 1
#: the statistics columns of ``GroupValues.stats``
STATS_COLUMNS = ("count", "median_days", "p90_days")


def micro_sums(keys: np.ndarray, micros: np.ndarray, n_groups: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per group 0..n_groups-1 the exact sum of ``micros`` as (high, low) int64 parts:
    partials add up part by part, in any order, to the same two numbers."""
    micros = np.asarray(micros, dtype=np.int64)
    high = np.zeros(n_groups, dtype=np.int64)
    low = np.zeros(n_groups, dtype=np.int64)
    np.add.at(high, keys, micros >> _LOW_BITS)
    np.add.at(low, keys, micros & _LOW_MASK)
    return high, low


def days_of(high: np.ndarray | pd.Series, low: np.ndarray | pd.Series) -> np.ndarray:
    """The sums of ``micro_sums`` in days, each rounded once (Python's integer division
    is correctly rounded). A loop over groups (edges, stages), not over events."""
    return np.array([((h << _LOW_BITS) + lo) / MICROS_PER_DAY_INT
                     for h, lo in zip(np.asarray(high).tolist(), np.asarray(low).tolist(),
                                      strict=True)], dtype=np.float64)


@dataclass
class GroupValues:
    """Values (integer microseconds) of named groups, kept whole for exact medians and
    P90s. ``keys``: one row per group, its name columns; ``group``: per value its row
    of ``keys``; ``bucket_by``: the name columns that choose a group's bucket (groups
    whose statistics are taken together, e.g. every edge into one activity, must share
    their bucket)."""

    keys: pd.DataFrame
    group: np.ndarray
    micros: np.ndarray
    bucket_by: tuple[str, ...]

    @classmethod
    def concat(cls, pieces: list[GroupValues]) -> GroupValues:
        """One set of values from several (of one bucket), groups matched by name."""
        if len(pieces) == 1:
            return pieces[0]
        columns = list(pieces[0].keys.columns)
        keys = pd.concat([p.keys for p in pieces], ignore_index=True)
        number = keys.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
        offsets = np.cumsum([0, *[len(p.keys) for p in pieces[:-1]]])
        group = np.concatenate([number[off + p.group] for off, p in zip(offsets, pieces,
                                                                          strict=True)])
        micros = np.concatenate([p.micros for p in pieces])
        firsts = keys.drop_duplicates(columns).reset_index(drop=True)
        return cls(keys=firsts, group=group, micros=micros, bucket_by=pieces[0].bucket_by)

    def split(self, buckets: int) -> list[GroupValues]:
        """The values in ``buckets`` pieces, each group's in the piece its names hash to
        (crc32: the same bucket in every partition and every process)."""
        names = self.keys[list(self.bucket_by)].astype(str).agg("\x1f".join, axis=1)
        bucket = np.array([zlib.crc32(n.encode()) % buckets for n in names],  # per group
                          dtype=np.int64)
        of_value = bucket[self.group]
        out = []
        for b in range(buckets):
            rows = np.flatnonzero(bucket == b)
            renumber = np.full(len(self.keys), -1, dtype=np.int64)
            renumber[rows] = np.arange(rows.size)
            mine = of_value == b
            out.append(GroupValues(keys=self.keys.iloc[rows].reset_index(drop=True),
                                   group=renumber[self.group[mine]],
                                   micros=self.micros[mine], bucket_by=self.bucket_by))
        return out

    def stats(self, columns: list[str]) -> pd.DataFrame:
        """Per distinct value of the name ``columns``: count, median_days, p90_days
        (``grouped_stats`` of the values in days, as the sections compute them)."""
        keys = self.keys[columns]
        number = keys.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
        firsts = keys.drop_duplicates().reset_index(drop=True)
        st = grouped_stats(number[self.group], self.micros / MICROS_PER_DAY, len(firsts))
        return firsts.assign(count=st["count"], median_days=st["median"],
                             p90_days=st["p90"])


#: statistics of one bucket's values, by table name
Stats = Callable[[GroupValues], dict[str, pd.DataFrame]]


class Runner(Protocol):
    """Runs a section's partial on every partition of whole cases.

    ``run(partial, stats, per_case, **params)`` calls ``partial(ctx, **per_case,
    **params)`` on each partition's ``Context`` (``per_case``: arrays with one value
    per case of the whole log, in the ``Context``'s case order, each partition getting
    its cases' values), takes each partial's ``values`` (a ``GroupValues`` or None) off
    it, and returns the partials and ``stats`` of every group's values of all
    partitions (the tables of every bucket, concatenated)."""

    def run(self, partial: Callable[..., Any], stats: Stats | None,
            per_case: Mapping[str, np.ndarray] | None = None, **params: Any
            ) -> tuple[list[Any], dict[str, pd.DataFrame]]: ...


@dataclass
class InProcess:
    """The whole ``Context`` as one partition (the single-process insight)."""

    ctx: Context

    def run(self, partial: Callable[..., Any], stats: Stats | None,
            per_case: Mapping[str, np.ndarray] | None = None, **params: Any
            ) -> tuple[list[Any], dict[str, pd.DataFrame]]:
        part = partial(self.ctx, **dict(per_case or {}), **params)
        values, part.values = part.values, None
        return [part], (stats(values) if stats is not None and values is not None else {})


def summed(frames: list[pd.DataFrame], by: list[str]) -> pd.DataFrame:
    """The partials' tables added up by their name columns (integer columns: exact)."""
    both = pd.concat(frames, ignore_index=True)
    return both.groupby(by, sort=False, as_index=False, dropna=False).sum()
