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
  id, each case's events in their order), the cases numbered, and the unchanged
  ``insight.analyze`` on the ``Context`` they make, so every section, headline and
  segment equals the single-process insight.

The sections' event-level aggregates are not combined from per-partition partials:
the medians and P90s (of waits, stays, cycle times) are exact only over all values,
and a mergeable quantile sketch would not equal the single-process figures. So the
driver holds the reduced events (a fixed few bytes per event, measured in
``docs/scale.md``) and one row per case, not the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Mapping, Roles
from features.prefixes import sort_key
from features.schema import ROW_COLUMN
from insight.context import Context, without_empty_attributes

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


def insight_part(events: pd.DataFrame, roles: Roles) -> InsightPart:
    """A partition's case table and reduced events (see the module's docstring)."""
    if len(events) == 0:
        return InsightPart(pd.DataFrame(), pd.DataFrame())
    events = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable"
                                ).reset_index(drop=True)
    cases = Context.from_events(events, roles, every_attribute=True).cases
    reduced = events[[c for c in EVENT_COLUMNS if c in events.columns]].copy()
    for name in CODED:
        if name in reduced.columns:
            reduced[name] = reduced[name].astype("category")
    return InsightPart(cases=cases, events=reduced)


def _same_categories(frames: list[pd.DataFrame]) -> None:
    """Code each categorical column alike in every frame (the union of their names,
    sorted), so the frames concatenate as categories, not as text."""
    for name in CODED:
        if name not in frames[0].columns:
            continue
        names = sorted(set().union(*(f[name].cat.categories for f in frames)))
        for frame in frames:
            frame[name] = frame[name].cat.set_categories(names)


def combined(parts: list[InsightPart]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The partitions' reduced events and case table, cases in ``read_log``'s order
    (sorted by case id as text, or as numbers) and numbered 0.. in ``case_id``. Empties
    ``parts``: each is let go once joined, so the driver holds two copies at most."""
    kept = [p for p in parts if len(p.cases)]
    parts.clear()
    if not kept:
        return pd.DataFrame(), pd.DataFrame()
    ids = pd.concat([p.cases["case_id"] for p in kept], ignore_index=True)
    lengths = np.concatenate([p.cases["events"].to_numpy() for p in kept])
    by_case = np.argsort(sort_key(ids), kind="stable")  # the cases in read_log's order
    rank = np.empty(len(ids), dtype=np.int64)
    rank[by_case] = np.arange(len(ids))
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
    return events, cases


def insight_on_cluster(log: str | Path, mapping: str | Path | Mapping | None, spec: Any,
                       analyze_options: dict[str, Any], *, partitions: int | None = None,
                       store: str | Path | None = None,
                       announce: Callable[[str], None] | None = None,
                       progress: Callable[[str], None] | None = None) -> Any:
    """``insight.analyze(read_log(log, mapping), **analyze_options)`` with the log read,
    validated and each partition's case table made on a Dask cluster."""
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
        events, cases = combined(client.gather(scaled.map(insight_part, roles)))
    if len(events) == 0:
        raise InsightError("the log has no events to analyse")
    step("computing the insight")
    context = Context.from_events(events, roles, as_of, cases=cases)
    read = EventLog(events, quarantine=pd.DataFrame(), report=scaled.report,
                    mapping=scaled.mapping)
    return analyze(read, context=context, **options)
