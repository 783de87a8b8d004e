"""Request bodies and logged logs -> canonical events, read through a model's mapping.

A request's events are read as a file's rows are, by the same reader and through the
model's own mapping (accepting canonical names too, and JSON's ISO times), so they are
validated and quarantined alike; what the reader set aside becomes a note on its case.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import EventLogError
from features.log import EventLog, canonicalize
from features.mapping import Mapping
from features.schema import ROW_COLUMN
from models.bundle import TargetBundle
from serving.schemas import CaseIn
from serving.store import ServedModel


class BadRequestError(EventLogError):
    """The request's events cannot be used; the message says which and why."""


def training_log_of(served: ServedModel, source: str | None = None) -> EventLog:
    """The log a served model was trained on (logged with its run), read through the
    model's mapping as the API reads events (its roles and process policy included)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(
        run_id=served.run_id, artifact_path="evaluation/events.parquet"))
    events = pd.read_parquet(local).drop(columns=["source_row"], errors="ignore")
    return canonicalize(events, canonical_reading(served.bundle),
                        source=source or f"run {served.run_id}")


def canonical_reading(bundle: TargetBundle) -> Mapping:
    """The model's mapping for events already in canonical form (once per loaded model)."""
    return bundle.derived("canonical reading", bundle.mapping.for_canonical_events)


def known_attribute_names(mapping: Mapping) -> frozenset[str]:
    """Every attribute name the model reads: canonical, the export's and extra columns."""
    return frozenset(mapping.canonical_names)


def cases_to_frame(cases: Sequence[CaseIn], mapping: Mapping
                   ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Flatten request cases to one row per event (case attributes repeated).

    Events are numbered within their case (``source_row``), as the client sent them, so
    a note names "event 3" of that case whatever else was scored with it. Attributes
    go under their canonical names (a client may use the export's); those the model
    does not know are left out and noted on the cases that sent them. Every cell but
    the time goes to the reader as text, which checks it as it checks a file's; the
    time goes as the exact UTC instant pydantic parsed (writing it out as
    text for the reader to parse back is work for nothing), and the reader still
    quarantines one outside the plausible years.
    """
    rows: list[dict[str, str | None]] = []
    numbers: list[int] = []
    micros: list[int] = []
    notes: dict[str, list[str]] = {}
    known = mapping.canonical_names
    # in the canonical order (by case id): the reader then need not reorder the rows
    for case in sorted(cases, key=lambda c: c.case_id):
        times = [_micros_utc(e.timestamp) for e in case.events]
        if any(b < a for a, b in itertools.pairwise(times)):
            notes.setdefault(case.case_id, []).append(
                "events were not in time order; they were sorted by timestamp")
        unknown = {name for name in case.attributes if name not in known}
        case_cells = _text_cells(case.attributes, known)
        for event in case.events:
            unknown.update(name for name in event.attributes if name not in known)
            cells = {**case_cells, **_text_cells(event.attributes, known)
                     } if event.attributes else dict(case_cells)
            cells["case_id"], cells["activity"] = case.case_id, event.activity
            if event.resource is not None:
                cells["resource"] = str(event.resource)
            rows.append(cells)
        numbers.extend(range(1, len(case.events) + 1))
        micros.extend(times)
        if unknown:
            notes.setdefault(case.case_id, []).append(
                f"attribute(s) unknown to the model ignored: {', '.join(sorted(unknown))}")
    return _request_frame(rows, numbers, micros), notes


def _text_cells(attributes: dict[str, Any], canonical: dict[str, str]
                ) -> dict[str, str | None]:
    """Cells under canonical names, as text (JSON numbers and text share columns); a
    canonical name wins over the export's name for the same column. The time is the
    event's own, never an attribute."""
    cells: dict[str, str | None] = {}
    for name, value in attributes.items():
        role = canonical.get(name)
        if role is None or role == "timestamp" or (role in cells and name != role):
            continue
        cells[role] = None if value is None else str(value)
    return cells


def _request_frame(rows: list[dict[str, str | None]], numbers: list[int],
                   micros: list[int]) -> pd.DataFrame:
    """The request's events as the reader takes a file's: text cells in one object block
    (from a list of dicts, or with text labels, pandas would infer and convert each
    column), the event numbers and the UTC instants beside them."""
    labels = list(dict.fromkeys(k for row in rows for k in row))
    block = np.array([[row.get(k) for k in labels] for row in rows], dtype=object
                     ).reshape(len(rows), len(labels))
    frame = pd.DataFrame(block, columns=pd.Index(labels, dtype=object), dtype=object,
                         copy=False)
    return frame.assign(**{
        ROW_COLUMN: np.asarray(numbers, dtype=np.int64),
        "timestamp": pd.array(np.asarray(micros, dtype="datetime64[us]")).tz_localize("UTC")})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _micros_utc(stamp: datetime) -> int:
    """Microseconds since the epoch, exactly; a time without an offset is UTC."""
    if stamp.tzinfo is None:
        return (stamp - _EPOCH_NAIVE) // _MICROSECOND
    return (stamp - _EPOCH) // _MICROSECOND


def read_request_events(raw: pd.DataFrame, bundle: TargetBundle,
                        notes: dict[str, list[str]]) -> EventLog:
    """Canonicalise request events through the model's mapping; quarantined rows and
    unknown activities become notes on their own case."""
    log = canonicalize(raw, canonical_reading(bundle), source="request")
    quarantine_notes(log, notes, "event")
    if log.report.unknown_activities:
        activity = np.asarray(log.column("activity"))
        cases = np.asarray(log.column("case_id"))
        for name in log.report.unknown_activities:
            for case, count in Counter(cases[activity == name].tolist()).items():
                notes.setdefault(case, []).append(
                    f"activity {name!r} is unknown to the model ({count} event(s)); counted "
                    "as 'other activity'")
    if len(log) == 0:
        details = log.quarantine["quarantine_detail"].astype(str)
        reasons = "; ".join(details.drop_duplicates().head(5))  # one per distinct reason
        raise BadRequestError(f"no usable event in the request: {reasons}")
    return log


def quarantine_notes(log: EventLog, notes: dict[str, list[str]], unit: str) -> None:
    """A note on its case for each quarantined row: "<unit> N ignored: reason (detail)".
    The quarantine holds the rows as sent, so the case is read from whichever of the
    mapping's case-id columns it has; a row without one is only counted."""
    bad = log.quarantine
    if not len(bad):
        return
    ref = log.mapping.columns.get("case_id")
    names = [ref] if isinstance(ref, str) else list(ref or [])
    column = next((name for name in names if name in bad.columns), None)
    if column is None:
        return
    cases = bad[column].astype(object).where(bad[column].notna(), "?").astype(str).str.strip()
    messages = (unit + " " + bad["source_row"].astype("int64").astype(str) + " ignored: "
                + bad["quarantine_reason"].astype(str) + " ("
                + bad["quarantine_detail"].astype(str) + ")")
    for case, listed in messages.groupby(cases.to_numpy(), sort=False):
        notes.setdefault(case, []).extend(listed.tolist())
