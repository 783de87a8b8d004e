"""The figures a user checks first when a log arrives: is this the data I meant?"""

from __future__ import annotations

from typing import Any

from features.log import EventLog
from features.outcomes import LOST, OPEN, WON, case_outcomes, completed_cases


def summarize(log: EventLog) -> dict[str, Any]:
    """Counts and span of the kept events, and the books on quarantined rows."""
    events = log.events
    roles = log.mapping.roles
    outcomes = case_outcomes(events, roles).value_counts()
    completed = completed_cases(events, roles)
    report = log.report
    return {
        "source": report.source,
        "rows_in": report.rows_in,
        "rows_kept": report.rows_kept,
        "rows_quarantined": report.rows_quarantined,
        "quarantined_by_reason": dict(report.quarantined.most_common()),
        "cases": int(events["case_id"].nunique()),
        "events": len(events),
        "activities": int(events["activity"].nunique()),
        "first_event": events["timestamp"].min(),
        "last_event": events["timestamp"].max(),
        "completed_cases": int(completed.sum()),
        "open_cases": int((~completed).sum()),
        "won": int(outcomes.get(WON, 0)),
        "lost": int(outcomes.get(LOST, 0)),
        "undecided": int(outcomes.get(OPEN, 0)),
        "warnings": report.warnings,
    }


def is_usable(summary: dict[str, Any]) -> bool:
    """A log is usable when at least one case survives validation."""
    return summary["events"] > 0 and summary["cases"] > 0
