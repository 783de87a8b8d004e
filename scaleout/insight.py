"""The process insight of a log read on Dask: ``l2c insight DIR --cluster local:N``.

What runs where:

- **workers**, per partition of whole cases: read, number, shuffle by case and
  validate (``read_partitioned``, the same books as ``read_log``); then the partition's
  part of the insight's ``Context`` (``insight_part``): its **case table** (one row per
  case: start, end, cycle time, outcome, completion, month, every case attribute, value:
  what the overview, funnel, segments and every per-case figure read), and its events
  reduced to what the sections read event by event (activity and stage as categories,
  time, discount, payment terms: no case id, no text);
- **driver**: the parts put together in ``read_log``'s case order (cases sorted by
  id, each case's events in their order), the cases numbered, and ``insight.analyze``
  on the ``Context`` they make, so every section, headline and segment equals the
  single-process insight.

The sections that split into per-partition partials (``insight.partials``) run them
on the workers, on each partition's own ``Context`` kept there (``partition_context``,
``OnCluster``): the process maps (whole and detail). Their medians and P90s are exact
only over all of a group's values, so each edge's waits go to one bucket task on a
worker (by the hash of the edge's target) rather than to the driver; sums of days are
summed as integer microseconds, in any order the same. The other sections still run
on the driver's ``Context`` (a fixed few bytes per event, measured in
``docs/scale.md``), as do the segments of ``--by``.
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
from features.prefixes import sort_key
from features.schema import ROW_COLUMN
from insight.context import Context, without_empty_attributes
from insight.partials import GroupValues, Stats

#: the columns the sections read event by event (besides case and activity codes and
#: time); every case attribute is read from the case table instead
EVENT_COLUMNS = ("activity", "timestamp", "stage", "discount_pct", "payment_terms_days")
#: event columns coded as categories for the driver (few distinct names, many events)
CODED = ("activity", "stage")


@dataclass
class InsightPart:
    """A partition's share of the insight's ``Context``: ``cases`` (its case table with
    every attribute column, cases sorted by id) and ``events`` (the ``EVENT_COLUMNS``
    the log has, in case-time order; ``cases["events"]`` rows per case)."""

    cases: pd.DataFrame
    events: pd.DataFrame


def partition_context(events: pd.DataFrame, roles: Roles) -> Context | None:
    """A partition's own ``Context`` (None when it holds no event), kept on its worker
    for the sections' partials: its case table with every attribute column, and its
    events reduced to the case id and the ``EVENT_COLUMNS`` (the case table, made
    first, is what reads the rest)."""
    if len(events) == 0:
        return None
    events = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable"
                                ).reset_index(drop=True)
    ctx = Context.from_events(events, roles, every_attribute=True)
    ctx.events = ctx.events[["case_id", *[c for c in EVENT_COLUMNS if c in events.columns]]]
    return ctx


def part_of(ctx: Context | None) -> InsightPart:
    """What a partition sends the driver: its case table and its reduced events."""
    if ctx is None:
        return InsightPart(pd.DataFrame(), pd.DataFrame())
    reduced = ctx.events[[c for c in EVENT_COLUMNS if c in ctx.events.columns]].copy()
    for name in CODED:
        if name in reduced.columns:
            reduced[name] = reduced[name].astype("category")
    return InsightPart(cases=ctx.cases, events=reduced)


def insight_part(events: pd.DataFrame, roles: Roles) -> InsightPart:
    """A partition's case table and reduced events (see the module's docstring)."""
    return part_of(partition_context(events, roles))


def _same_categories(frames: list[pd.DataFrame]) -> None:
    """Code each categorical column alike in every frame (the union of their names,
    sorted), so the frames concatenate as categories, not as text."""
    for name in CODED:
        if name not in frames[0].columns:
            continue
        names = sorted(set().union(*(f[name].cat.categories for f in frames)))
        for frame in frames:
            frame[name] = frame[name].cat.set_categories(names)


def combined(parts: list[InsightPart]
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[np.ndarray]]:
    """The partitions' reduced events and case table, cases in ``read_log``'s order
    (sorted by case id as text, or as numbers) and numbered 0.. in ``case_id``; and per
    partition the numbers of its cases, in its own order. Empties ``parts``: each is
    let go once joined, so the driver holds two copies at most."""
    sizes = [len(p.cases) for p in parts]
    kept = [p for p in parts if len(p.cases)]
    parts.clear()
    if not kept:
        return pd.DataFrame(), pd.DataFrame(), [np.zeros(0, dtype=np.int64)] * len(sizes)
    ids = pd.concat([p.cases["case_id"] for p in kept], ignore_index=True)
    lengths = np.concatenate([p.cases["events"].to_numpy() for p in kept])
    by_case = np.argsort(sort_key(ids), kind="stable")  # the cases in read_log's order
    rank = np.empty(len(ids), dtype=np.int64)
    rank[by_case] = np.arange(len(ids))
    numbers = np.split(rank, np.cumsum(sizes)[:-1])
    order = np.argsort(np.repeat(rank, lengths), kind="stable")
    cases = pd.concat([p.cases for p in kept], ignore_index=True)
    frames = [p.events for p in kept]
    kept.clear()
    _same_categories(frames)
    events = pd.concat(frames, ignore_index=True)
    frames.clear()
    events = events.take(order).reset_index(drop=True)
    events.insert(0, "case_id", np.repeat(np.arange(len(ids)), lengths[by_case]))
    cases = without_empty_attributes(cases.take(by_case))
    return events, cases, numbers


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
        parts = client.gather([client.submit(part_of, c) for c in contexts])
        sizes = [len(p.cases) for p in parts]
        events, cases, numbers = combined(parts)
        if len(events) == 0:
            raise InsightError("the log has no events to analyse")
        step("computing the insight")
        context = Context.from_events(events, roles, as_of, cases=cases)
        read = EventLog(events, quarantine=pd.DataFrame(), report=scaled.report,
                        mapping=scaled.mapping)
        with_cases = [i for i, n in enumerate(sizes) if n]
        runner = OnCluster(client, [contexts[i] for i in with_cases],
                           [numbers[i] for i in with_cases], buckets=len(with_cases))
        return analyze(read, context=context, runner=runner, **options)
