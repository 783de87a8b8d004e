"""The process insight of a log read on Dask: ``l2c insight DIR --cluster local:N``.

What runs where:

- **workers**, per partition of whole cases: read, number, shuffle by case and
  validate (``read_partitioned``, the same books as ``read_log``); then the partition's
  own ``Context`` (``partition_context``), kept there for the whole analysis: its
  **case table** (one row per case: start, end, cycle time, outcome, completion, month,
  every case attribute, value: what the overview, funnel, segments and every per-case
  figure read) and its events reduced to what the sections read event by event
  (activity, stage, time, discount, payment terms); and on it every section's partial
  (``insight.partials``, ``OnCluster``): the process maps (whole and detail), the
  variants' sequence hashes and sequences, the funnel's milestone times, the
  bottlenecks' stays and stalls, rework, conformance, the discounts' quotes and the
  payments' invoices. Medians and P90s are exact only
  over all of a group's values, so each group's values (an edge's waits, a stage's
  stays) go to one bucket task on a worker (by the hash of the group's name) rather
  than to the driver; sums of days are summed as integer microseconds, in any order
  the same;
- **driver**: the case tables in ``read_log``'s case order (cases sorted by id) and
  the reduced events (activity and stage as categories, time, discount, payment terms:
  no case id, no text), fetched one partition at a time and written at their final
  rows (``assembled``); the cases numbered; then ``insight.analyze`` on the ``Context``
  they make, with the partials combined into each section, so every section, headline
  and segment equals the single-process insight. The combines read the case
  table and the partials, no event: the events make the ``Context`` itself, and the
  segments of ``--by`` are analysed there in full, on each segment's events.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Mapping as LogMapping
from features.mapping import Roles
from features.prefixes import epoch_micros, sort_key
from features.schema import ROW_COLUMN
from insight.context import Context, without_empty_attributes
from insight.partials import GroupValues, Stats

#: the columns the sections read event by event (besides case and activity codes and
#: time); every case attribute is read from the case table instead
EVENT_COLUMNS = ("activity", "timestamp", "stage", "discount_pct", "payment_terms_days")
#: event columns coded as categories for the driver (few distinct names, many events)
CODED = ("activity", "stage")


def partition_context(events: pd.DataFrame, roles: Roles) -> Context | None:
    """A partition's own ``Context`` (None when it holds no event), kept on its worker
    for the sections' partials: its case table with every attribute column, and its
    events reduced to the ``EVENT_COLUMNS`` (the case table, made first, is what reads
    the rest; the cases are numbered in ``case``)."""
    if len(events) == 0:
        return None
    events = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable"
                                ).reset_index(drop=True)
    ctx = Context.from_events(events, roles, every_attribute=True)
    ctx.events = ctx.events[[c for c in EVENT_COLUMNS if c in events.columns]]
    return ctx


def _coded(column: pd.Series) -> pd.Series:
    """A ``CODED`` column as the driver gets it (its categories are the names)."""
    return column.astype("category")


@dataclass
class PartHead:
    """What the driver needs of a partition before its events: its case ids, each
    case's number of events, and the names in its coded columns."""

    case_id: pd.Series
    lengths: np.ndarray
    categories: dict[str, pd.Index]


def part_head(ctx: Context | None) -> PartHead | None:
    if ctx is None:
        return None
    return PartHead(case_id=ctx.cases["case_id"], lengths=ctx.cases["events"].to_numpy(),
                    categories={name: _coded(ctx.events[name]).cat.categories
                                for name in CODED if name in ctx.events.columns})


def part_cases(ctx: Context) -> pd.DataFrame:
    """A partition's case table (every attribute column, cases sorted by id)."""
    return ctx.cases


def part_events(ctx: Context) -> pd.DataFrame:
    """A partition's events as the driver gets them: the ``EVENT_COLUMNS`` it has, in
    case-time order, the ``CODED`` ones as categories; no case id, no text."""
    return ctx.events.assign(**{name: _coded(ctx.events[name]) for name in CODED
                                if name in ctx.events.columns})


class _Column:
    """One event column being filled partition by partition at its rows' final places
    (categories as codes into the union of the partitions' names, times as integers)."""

    def __init__(self, sample: pd.Series, total: int, categories: pd.Index | None) -> None:
        self.dtype = sample.dtype
        self.categories = categories
        if categories is not None:  # codes as small as pandas keeps them: no copy later
            self.values = np.full(total, -1, dtype=np.int8 if len(categories) < 127
                                  else np.int16 if len(categories) < 32_767 else np.int32)
        elif isinstance(self.dtype, pd.DatetimeTZDtype):
            self.values = np.empty(total, dtype=np.int64)
        else:
            self.values = np.empty(total, dtype=sample.to_numpy().dtype)

    def fill(self, rows: np.ndarray, column: pd.Series) -> None:
        if self.categories is not None:  # code -1 (missing) picks the -1 at the end
            recode = np.r_[self.categories.get_indexer(column.cat.categories), -1]
            self.values[rows] = recode[column.cat.codes.to_numpy()]
        elif isinstance(self.dtype, pd.DatetimeTZDtype):
            self.values[rows] = column.array.asi8
        else:
            self.values[rows] = column.to_numpy()

    def series(self) -> pd.Series:
        if self.categories is not None:
            return pd.Series(pd.Categorical.from_codes(self.values, self.categories))
        if isinstance(self.dtype, pd.DatetimeTZDtype):
            naive = self.values.view(f"M8[{self.dtype.unit}]")
            return pd.Series(naive).dt.tz_localize(self.dtype.tz)
        return pd.Series(self.values)


def assembled(client: Any, contexts: list[Any]
              ) -> tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray]]:
    """The partitions' reduced events and case tables as the driver's ``Context`` takes
    them: cases in ``read_log``'s order (sorted by case id as text, or as numbers) and
    numbered 0.. in the events' ``case_id``; and per partition the numbers of its cases,
    in its own order. Each partition's events are fetched one at a time and written at
    their final rows, so the driver holds the events once, plus one partition's."""
    heads = client.gather([client.submit(part_head, c) for c in contexts])
    sizes = [0 if h is None else len(h.lengths) for h in heads]
    kept = [i for i, h in enumerate(heads) if h is not None]
    if not kept:
        return pd.DataFrame(), pd.DataFrame(), [np.zeros(0, dtype=np.int64)] * len(sizes)
    ids = pd.concat([heads[i].case_id for i in kept], ignore_index=True)
    lengths = np.concatenate([heads[i].lengths for i in kept])
    by_case = np.argsort(sort_key(ids), kind="stable")  # the cases in read_log's order
    rank = np.empty(len(ids), dtype=np.int64)
    rank[by_case] = np.arange(len(ids))
    numbers = np.split(rank, np.cumsum(sizes)[:-1])
    ordered = lengths[by_case]
    first_row = np.r_[0, np.cumsum(ordered)[:-1]]  # of each case, by number
    total = int(ordered.sum())
    union = {name: pd.Index(sorted(set().union(*(heads[i].categories[name] for i in kept))))
             for name in heads[kept[0]].categories}
    del heads, ids
    columns: dict[str, _Column] = {}
    for i in kept:  # one partition's events at a time
        events = client.submit(part_events, contexts[i]).result()
        own = numbers[i]  # the partition's cases, in its order (as its events are)
        part_lengths = ordered[own]
        within = np.arange(len(events)) - np.repeat(np.r_[0, np.cumsum(part_lengths)[:-1]],
                                                    part_lengths)
        rows = np.repeat(first_row[own], part_lengths) + within
        for name in events.columns:
            if name not in columns:
                columns[name] = _Column(events[name], total, union.get(name))
            columns[name].fill(rows, events[name])
        del events
    data: dict[str, Any] = {"case_id": np.repeat(np.arange(len(rank)), ordered)}
    for name in list(columns):  # each filled array let go once it is a column
        data[name] = columns.pop(name).series()
    frame = pd.DataFrame(data, copy=False)
    del data
    cases = pd.concat(client.gather([client.submit(part_cases, contexts[i]) for i in kept]),
                      ignore_index=True)
    return frame, without_empty_attributes(cases.take(by_case)), numbers


def _in_buckets(partial: Any, buckets: int) -> list[GroupValues | None]:
    """A partial's values split by group into the buckets (on the partial's worker)."""
    if partial.values is None:
        return [None] * buckets
    return partial.values.split(buckets)


def _without_values(partial: Any) -> Any:
    """The partial as the driver gets it: its sums and counts, not its values."""
    return replace(partial, values=None)


def _bucket_stats(stats: Stats, *pieces: GroupValues | None) -> dict[str, pd.DataFrame]:
    """The statistics of one bucket's groups over the values of every partition."""
    present = [p for p in pieces if p is not None]
    return stats(GroupValues.concat(present)) if present else {}


@dataclass
class OnCluster:
    """Runs the sections' partials (``insight.partials.Runner``) on the partitions'
    ``Context`` futures: each partial on its partition's worker, each group's values
    sent to one of ``buckets`` tasks (by the hash of its names) that takes their medians
    and P90s; the driver gets the partials' sums and counts and the buckets' tables."""

    client: Any
    contexts: list[Any]  # futures of each partition's Context (partitions with cases)
    numbers: list[np.ndarray]  # per partition, its cases' numbers in the driver's Context
    buckets: int

    def run(self, partial: Callable[..., Any], stats: Stats | None,
            per_case: Mapping[str, np.ndarray] | None = None, **params: Any
            ) -> tuple[list[Any], dict[str, pd.DataFrame]]:
        submit = self.client.submit
        futures = []
        for context, numbers in zip(self.contexts, self.numbers, strict=True):
            own = {name: values[numbers] for name, values in (per_case or {}).items()}
            futures.append(submit(partial, context, pure=False, **own, **params))
        bare = [submit(_without_values, f, pure=False) for f in futures]
        tables: list[Any] = []
        if stats is not None:
            split = [submit(_in_buckets, f, self.buckets, pure=False) for f in futures]
            for b in range(self.buckets):
                pieces = [submit(operator.getitem, s, b, pure=False) for s in split]
                tables.append(submit(_bucket_stats, stats, *pieces, pure=False))
        partials = self.client.gather(bare)
        by_name: dict[str, list[pd.DataFrame]] = {}
        for table in self.client.gather(tables):
            for name, frame in table.items():
                by_name.setdefault(name, []).append(frame)
        return partials, {name: pd.concat(frames, ignore_index=True)
                          for name, frames in by_name.items()}


def insight_on_cluster(log: str | Path, mapping: str | Path | LogMapping | None, spec: Any,
                       analyze_options: dict[str, Any], *, partitions: int | None = None,
                       store: str | Path | None = None,
                       announce: Callable[[str], None] | None = None,
                       progress: Callable[[str], None] | None = None) -> Any:
    """``insight.analyze(read_log(log, mapping), **analyze_options)`` with the log read,
    validated, each partition's case table made and the sections that split into
    partials computed on a Dask cluster."""
    from insight import InsightError, analyze
    from scaleout.cluster import announce_cluster, dask_client
    from scaleout.input import read_partitioned

    options = dict(analyze_options)
    as_of = options.pop("as_of", None)
    step = progress or (lambda _m: None)
    with dask_client(spec) as client:
        announce_cluster(client, announce)
        step("reading, shuffling by case and validating the log")
        scaled = read_partitioned(log, client, mapping, partitions=partitions, store=store)
        step("each partition's case table and events for the insight")
        roles = scaled.mapping.roles
        contexts = scaled.map(partition_context, roles)
        events, cases, numbers = assembled(client, contexts)
        sizes = [len(n) for n in numbers]
        if len(events) == 0:
            raise InsightError("the log has no events to analyse")
        step("computing the insight")
        context = Context.from_codes(events, roles, as_of, events["case_id"].to_numpy(),
                                     events["activity"].array,
                                     epoch_micros(events["timestamp"]), cases)
        read = EventLog(events, quarantine=pd.DataFrame(), report=scaled.report,
                        mapping=scaled.mapping)
        with_cases = [i for i, n in enumerate(sizes) if n]
        runner = OnCluster(client, [contexts[i] for i in with_cases],
                           [numbers[i] for i in with_cases], buckets=len(with_cases))
        return analyze(read, context=context, runner=runner, **options)
