"""Scored cases -> the answers the API gives: one dict per case, dated, with notes.

Every null answer says why (the case is won or lost, no model is served, the input
was not a number); dates are computed on microsecond integers for all rows at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Mapping
from features.outcomes import first_time_of, terms_at_invoice
from models.targets import TARGETS
from serving.caveats import low_data_notes
from serving.store import Snapshot

if TYPE_CHECKING:
    from serving.scoring import ScoredCases


def assemble(scored: ScoredCases, snapshot: Snapshot, explain: bool,
             top_k: int) -> list[dict[str, Any]]:
    """One response dict per case, in the order of the scored cases."""
    try:
        return _assemble(scored, snapshot, explain, top_k)
    finally:  # on an error, or SHAP values started but not asked for
        scored.drop_explanations()


def _assemble(scored: ScoredCases, snapshot: Snapshot, explain: bool,
              top_k: int) -> list[dict[str, Any]]:
    # each case's latest prefix ends at its last event and counts its events
    keys = next(iter(scored.scores.values())).read.features.keys
    ids = keys["case_id"].tolist()
    as_of = keys["prefix_end"].as_unit("us").asi8  # microseconds since the epoch
    statuses = scored.status.to_dict()
    versions = {t: m.version for t, m in snapshot.models.items()}
    thin = low_data_notes(snapshot)
    out: dict[str, dict[str, Any]] = {}
    for case, when, used in zip(ids, _datetimes(as_of), keys["prefix_len"].tolist(),
                                strict=True):
        status = str(statuses.get(case, "open"))
        notes = list(scored.notes.get(case, []))
        if status in _STATUS_NOTES:
            notes.append(_STATUS_NOTES[status])
        out[case] = {"case_id": case, "status": status, "as_of": when, "events_used": used,
                     "win_probability": None, "remaining_time": None, "payment_delay": None,
                     "explanations": {}, "notes": notes, "model_versions": dict(versions)}
    due = _due_dates(*scored.due_dates_read())
    position = {case: i for i, case in enumerate(ids)}
    for target in TARGETS:  # a null answer always says why
        if target in scored.scores:
            continue
        for entry in out.values():
            if _applies(target, entry["status"]) and entry["case_id"] not in scored.refused:
                entry["notes"].append(f"no {target} model is served: {_ANSWER_KEY[target]} "
                                      "is null")
    for target, scores in scored.scores.items():
        order = scores.read.case_ids.tolist()
        entries = [out[case] for case in order]
        times = as_of if order == ids else as_of[[position[c] for c in order]]
        answers = _target_answers(target, scores.predictions, times, due, order)
        explained = scores.explanations(top_k) if explain else None
        for i, (entry, answer) in enumerate(zip(entries, answers, strict=True)):
            if not _applies(target, entry["status"]) or entry["case_id"] in scored.refused:
                continue
            if not _finite_answer(answer):
                entry["notes"].append(f"no {target} prediction: the model's output is not "
                                      "a finite number for this case's input")
                continue
            entry[_ANSWER_KEY[target]] = answer
            if target in thin:
                entry["notes"].append(thin[target])
            if explained is not None:
                entry["explanations"][target] = explained[i]
    return list(out.values())


def _finite_answer(answer: Any) -> bool:
    if isinstance(answer, dict):
        return all(np.isfinite(answer[k]) for k in ("days", "p10_days", "p90_days"))
    return bool(np.isfinite(answer))


_STATUS_NOTES = {
    "won": "the case is already won: no win probability; time to payment and payment delay "
           "are still predicted",
    "lost": "the case is already lost: nothing left to predict",
    "closed": "payment received: the case is closed, nothing left to predict",
}
_ANSWER_KEY = {"outcome": "win_probability", "remaining_time": "remaining_time",
               "payment_delay": "payment_delay"}


def _target_answers(target: str, result: dict[str, np.ndarray], as_of: np.ndarray,
                    due: pd.Series, ids: list[str]) -> list[Any]:
    """Per row of ``result``, what the response says for ``target``; dates are computed
    on microsecond integers for all rows at once (a pandas date sum per row is slow)."""
    if target == "outcome":
        return result["p_win"].astype(float).tolist()
    point, lower, upper = (np.asarray(result[c], dtype=float)
                           for c in ("prediction_days", "lower_days", "upper_days"))
    if target == "remaining_time":
        point, lower, upper = (np.maximum(v, 0.0) for v in (point, lower, upper))
        ends = (_datetimes(_shifted(as_of, days)) for days in (point, lower, upper))
        return [{"days": d, "p10_days": lo, "p90_days": hi, "expected_end": e,
                 "end_p10": e10, "end_p90": e90}
                for d, lo, hi, e, e10, e90 in zip(point.tolist(), lower.tolist(),
                                                  upper.tolist(), *ends, strict=True)]
    due_at = np.full(len(ids), _NAT, dtype=np.int64)
    if len(due):
        known = due.reindex(ids)
        due_at = np.where(known.isna().to_numpy(), _NAT,
                          pd.DatetimeIndex(known).as_unit("us").asi8)
    paid_at = _shifted(due_at, point)
    return [{"days": d, "p10_days": lo, "p90_days": hi, "due_date": dd,
             "expected_payment_date": pd_}
            for d, lo, hi, dd, pd_ in zip(point.tolist(), lower.tolist(), upper.tolist(),
                                          _datetimes(due_at), _datetimes(paid_at),
                                          strict=True)]


_NAT = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


_MAX_DAYS = 1_000_000.0  # beyond, a duration would overflow the microsecond clock
_FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def _shifted(micros: np.ndarray, days: np.ndarray) -> np.ndarray:
    """``micros`` plus ``days``; missing (``_NAT``) where either is, or where the days are
    not a duration a date could hold (a model fed absurd input can say anything)."""
    usable = (micros != _NAT) & np.isfinite(days) & (np.abs(days) <= _MAX_DAYS)
    step = np.round(np.where(usable, days, 0.0) * 86_400_000_000).astype(np.int64)
    return np.where(usable, micros + step, _NAT)


def _datetimes(micros: np.ndarray) -> list[datetime | None]:
    """UTC datetimes (exact to the microsecond) for the response, None where missing or
    past what a date can hold (year 1 to 9999)."""
    return [None if us == _NAT or not _FIRST_US <= us <= _LAST_US
            else _EPOCH + timedelta(microseconds=us) for us in micros.tolist()]


def _applies(target: str, status: str) -> bool:
    if status in ("lost", "closed"):
        return False
    return not (target == "outcome" and status == "won")


def _due_dates(log: EventLog, mapping: Mapping) -> pd.Series:
    """First invoice + terms as known at it: the due date of the payment-delay label."""
    invoiced = np.isin(np.asarray(log.column("activity")), mapping.roles.invoice)
    if not invoiced.any():  # nothing invoiced yet: no due date (and no groupby to pay for)
        return pd.Series(dtype=object)
    first = first_time_of(log.events, mapping.roles.invoice)
    terms = terms_at_invoice(log.events, mapping.roles).reindex(first.index)
    return first + pd.to_timedelta(terms.fillna(0.0), unit="D")
