"""The process insight of a log read on Dask: ``l2c insight DIR --cluster local:N``.

What runs where:

- **workers**, per partition of whole cases: read, number, shuffle by case and
  validate (``read_partitioned``, the same books as ``read_log``), then put the
  partition in the form the insight reads (``compact``): events in case-time order,
  only the columns a section reads, each case attribute (rep, region, account, ...)
  kept on the case's first event that gives it (the insight reads a case's first value
  of an attribute, ``Context.case_value``), text in Arrow storage;
- **driver**: the partitions' compact events in one frame, cases in the order
  ``read_log`` gives them (sorted by case id), and the unchanged ``insight.analyze``
  on it, so every section, headline and segment equals the single-process insight.

The sections' aggregates are not combined from per-partition partials: medians and
P90s (of waits, stays, cycle times) are exact only over all values, and a mergeable
quantile sketch would not equal the single-process figures. The driver therefore holds
the compact events (measured in ``docs/scale.md``), a fraction of what ``read_log``
holds, not a per-group summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Mapping
from features.prefixes import sort_key
from features.schema import ROW_COLUMN

#: columns the insight reads event by event; every other text column is a case attribute
EVENT_COLUMNS = ("case_id", "activity", "timestamp", "value", "stage", "discount_pct",
                 "payment_terms_days", ROW_COLUMN)
#: event-level columns no section reads
UNREAD = ("resource", "lost_reason", "lifecycle")


def _arrow_text(values: pd.Series) -> pd.Series:
    return values.astype(pd.StringDtype("pyarrow", na_value=np.nan))


def compact(events: pd.DataFrame) -> pd.DataFrame:
    """A partition's canonical events as the insight reads them (see the module's
    docstring): sorted by case, time and file row; unread columns dropped; each text
    case attribute only on its first event that has it."""
    events = events.drop(columns=[c for c in UNREAD if c in events.columns])
    events = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable"
                                ).reset_index(drop=True)
    case = pd.factorize(events["case_id"])[0]
    out = {}
    for name in events.columns:
        column = events[name]
        if name not in EVENT_COLUMNS and not pd.api.types.is_numeric_dtype(column.dtype):
            given = np.flatnonzero(column.notna().to_numpy())
            first = given[np.r_[True, case[given][1:] != case[given][:-1]]] if len(
                given) else given
            kept = np.zeros(len(column), dtype=bool)
            kept[first] = True
            column = column.where(kept)
        if pd.api.types.is_string_dtype(column.dtype) and not isinstance(
                column.dtype, pd.CategoricalDtype):
            column = _arrow_text(column)
        out[name] = column
    return pd.DataFrame(out)


def _case_runs(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each case's id and its number of events (the frame is sorted by case)."""
    ids = events["case_id"].to_numpy()
    if len(ids) == 0:
        return ids, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return ids[starts], np.diff(np.r_[starts, len(ids)])


def combined_events(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The partitions' compact events as one frame, cases in ``read_log``'s order
    (sorted by case id; each case's events stay in their order). Empties ``parts``:
    each partition is let go once joined, so the driver holds two copies at most."""
    kept = [p for p in parts if len(p)]
    parts.clear()
    if not kept:
        return pd.DataFrame()
    runs = [_case_runs(p) for p in kept]
    ids = np.concatenate([r[0] for r in runs])
    lengths = np.concatenate([r[1] for r in runs])
    rank = np.empty(len(ids), dtype=np.int64)
    # the same key read_log's order follows: case ids sorted as text (or as numbers)
    rank[np.argsort(sort_key(pd.Series(ids, dtype=kept[0]["case_id"].dtype)),
                    kind="stable")] = np.arange(len(ids))
    order = np.argsort(np.repeat(rank, lengths), kind="stable")
    frame = pd.concat(kept, ignore_index=True)
    kept.clear()  # the partitions, joined: let them go before the take
    return frame.take(order).reset_index(drop=True)


def insight_on_cluster(log: str | Path, mapping: str | Path | Mapping | None, spec: Any,
                       analyze_options: dict[str, Any], *, partitions: int | None = None,
                       store: str | Path | None = None,
                       announce: Callable[[str], None] | None = None,
                       progress: Callable[[str], None] | None = None) -> Any:
    """``insight.analyze(read_log(log, mapping), **analyze_options)`` with the log read,
    validated and made compact on a Dask cluster."""
    from insight import analyze
    from scaleout.cluster import announce_cluster, dask_client
    from scaleout.input import read_partitioned

    step = progress or (lambda _m: None)
    with dask_client(spec) as client:
        announce_cluster(client, announce)
        step("reading, shuffling by case and validating the log")
        scaled = read_partitioned(log, client, mapping, partitions=partitions, store=store)
        step("ordering each partition's events for the insight")
        events = combined_events(client.gather(scaled.map(compact)))
    step("computing the insight")
    read = EventLog(events, quarantine=pd.DataFrame(), report=scaled.report,
                    mapping=scaled.mapping)
    return analyze(read, **analyze_options)
