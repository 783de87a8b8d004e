"""What the pages show, computed by the API's own services (no second route to a number).

The served training log is read as ``GET /v1/forecast`` reads it; deals are scored by
``score_log`` and ``assemble`` (the batch route's functions); one deal is predicted by
the coalescer of ``POST /v1/predict``; the forecast is ``serving.forecast.forecast``.
Results that only depend on the served models are kept per snapshot, since a page is
opened far more often than a model is promoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from models.metrics import prefix_bucket
from serving.answers import assemble
from serving.cache import kept
from serving.events import known_attribute_names
from serving.forecast import forecast
from serving.routes.forecast import training_log
from serving.schemas import PredictRequest
from serving.scoring import score_log
from serving.store import Snapshot

GROUPS = ("region", "rep", "lead_source", "product")
#: columns of a deal the pages show or filter by (when the log has them)
DEAL_COLUMNS = ("account", "rep", "region", "lead_source", "product", "currency", "value",
                "payment_terms")
_CORE = ("case_id", "activity", "timestamp", "resource", "source_row")


class NoDealError(LookupError):
    """The case is not in the served log (404 on its page)."""


def served_key(snapshot: Snapshot) -> tuple[tuple[str, int, str], ...]:
    return tuple(sorted((t, m.version, m.run_id) for t, m in snapshot.models.items()))


def served_log(snapshot: Snapshot) -> tuple[EventLog, str]:
    """The served outcome model's training log, as the forecast route reads it."""
    return kept(("log", snapshot.get("outcome").run_id), lambda: training_log(snapshot))


def sub_log(log: EventLog, cases: pd.Index | np.ndarray) -> EventLog:
    events = log.events
    inside = events[events["case_id"].isin(cases)].reset_index(drop=True)
    return EventLog(inside, quarantine=log.quarantine.iloc[:0], report=log.report,
                    mapping=log.mapping)


def currencies(log: EventLog) -> list[str]:
    if "currency" not in log.events.columns:
        return []
    return sorted(log.events["currency"].dropna().astype(str).unique().tolist())


def case_currency(log: EventLog) -> pd.Series:
    """Each case's currency (its last given one)."""
    events = log.events
    if "currency" not in events.columns:
        return pd.Series(dtype=object)
    return events.dropna(subset=["currency"]).groupby("case_id", sort=False)["currency"].last()


def pipeline_forecast(snapshot: Snapshot, currency: str | None, group_by: str | None,
                      months: int, simulations: int) -> dict[str, Any]:
    """``serving.forecast.forecast`` of the served log's deals in one currency (all of
    them when the log has one currency or none: then it is exactly ``GET
    /v1/forecast``'s answer). Never two currencies in one sum."""
    log, source = served_log(snapshot)

    def compute() -> dict[str, Any]:
        chosen, where = log, source
        if currency is not None and len(currencies(log)) > 1:
            per_case = case_currency(log)
            chosen = sub_log(log, per_case.index[per_case == currency])
            where = f"{source}, deals in {currency}"
        return forecast(snapshot, chosen, where, group_by, months, simulations)

    return kept(("forecast", served_key(snapshot), currency, group_by, months, simulations),
                compute)


@dataclass(frozen=True)
class Deals:
    """Every open deal of the served log with its prediction (as the batch route says)."""

    table: pd.DataFrame  # one row per open deal
    as_of: pd.Timestamp


def open_deals(snapshot: Snapshot) -> Deals:
    def compute() -> Deals:
        log, _ = served_log(snapshot)
        scored = score_log(snapshot, log)
        predictions = assemble(scored, snapshot, explain=False, top_k=1)
        rows = [{"case_id": p["case_id"], "status": p["status"],
                 "win_probability": p["win_probability"], "events_used": p["events_used"],
                 "last_event": p["as_of"],
                 "expected_close": (p["remaining_time"] or {}).get("expected_end")}
                for p in predictions if p["status"] == "open"]
        table = pd.DataFrame(rows, columns=["case_id", "status", "win_probability",
                                            "events_used", "last_event", "expected_close"])
        events = log.events
        present = [c for c in DEAL_COLUMNS if c in events.columns]
        last = events.groupby("case_id", sort=False)[[*present, "activity"]].last()
        table = table.join(last, on="case_id")
        if "value" not in table.columns:
            table["value"] = np.nan
        p = table["win_probability"].astype(float)
        table["at_risk"] = (1.0 - p) * table["value"].astype(float).fillna(0.0)
        table = table.sort_values("at_risk", ascending=False, kind="stable")
        as_of = events["timestamp"].max()
        # the remaining time counts from a deal's own last event: a deal quiet for long
        # can be due before the list's date, which the list must say, not show as ahead
        due = pd.to_datetime(table["expected_close"], utc=True, format="ISO8601")
        table["overdue"] = (due < as_of).to_numpy()
        return Deals(table.reset_index(drop=True), as_of)

    return kept(("deals", served_key(snapshot)), compute)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def deal_request(snapshot: Snapshot, case_id: str, top_k: int = 6) -> PredictRequest:
    """The case's events in the served log as a ``POST /v1/predict`` body: attributes
    constant over the case are case attributes, the others stay on their events."""
    log, _ = served_log(snapshot)
    events = log.events
    rows = events[events["case_id"] == case_id]
    if rows.empty:
        raise NoDealError(f"deal {case_id!r} is not in the served log")
    known = known_attribute_names(log.mapping)
    columns = [c for c in rows.columns if c in known and c not in _CORE]
    steady = [c for c in columns if rows[c].nunique(dropna=False) <= 1]
    moving = [c for c in columns if c not in steady]
    first = rows.iloc[0]
    attributes = {c: _plain(first[c]) for c in steady}
    body = {"case_id": case_id, "attributes": attributes, "explain": True, "top_k": top_k,
            "events": [{"activity": str(r["activity"]), "timestamp": r["timestamp"],
                        "resource": None if pd.isna(r.get("resource")) else str(r["resource"]),
                        "attributes": {c: _plain(r[c]) for c in moving}}
                       for r in rows.to_dict("records")]}
    return PredictRequest.model_validate(body)


def timeline(snapshot: Snapshot, case_id: str) -> pd.DataFrame:
    log, _ = served_log(snapshot)
    events = log.events
    rows = events[events["case_id"] == case_id]
    shown = [c for c in ("timestamp", "activity", "resource", "stage", "discount_pct")
             if c in rows.columns]
    return rows[shown].reset_index(drop=True)


@dataclass(frozen=True)
class WhatIf:
    discount_pct: float | None = None
    payment_terms: str | None = None
    next_step: str | None = None

    def changes(self) -> bool:
        return any(v not in (None, "") for v in (self.discount_pct, self.payment_terms,
                                                    self.next_step))


def what_if_request(request: PredictRequest, change: WhatIf) -> PredictRequest:
    """The deal as it would be: a new discount (on the latest event that carries one, or
    on the next step), other payment terms, or one more step a day after the last."""
    body = request.model_dump()
    events = body["events"]
    if change.payment_terms:
        body["attributes"]["payment_terms"] = change.payment_terms
        for event in events:
            event["attributes"].pop("payment_terms", None)
    if change.next_step:
        last = events[-1]
        events.append({"activity": change.next_step,
                       "timestamp": last["timestamp"] + timedelta(days=1),
                       "resource": last["resource"],
                       "attributes": {k: v for k, v in last["attributes"].items()
                                      if k != "discount_pct"}})
    if change.discount_pct is not None:
        carrying = [e for e in events if e["attributes"].get("discount_pct") is not None]
        target = events[-1] if change.next_step or not carrying else carrying[-1]
        if "discount_pct" in body["attributes"]:
            body["attributes"]["discount_pct"] = change.discount_pct
        else:
            target["attributes"]["discount_pct"] = change.discount_pct
    return PredictRequest.model_validate(body)


def what_if_choices(snapshot: Snapshot) -> dict[str, list[str]]:
    """Payment terms and next steps the model has seen (offered in the what-if form)."""
    def compute() -> dict[str, list[str]]:
        log, _ = served_log(snapshot)
        events = log.events
        terms = (sorted(events["payment_terms"].dropna().astype(str).unique().tolist())
                 if "payment_terms" in events.columns else [])
        roles = log.mapping.roles
        ending = {*roles.won, *roles.lost, *roles.payment}  # the outcome is not a step
        steps = [a for a in events["activity"].astype(str).value_counts().index.tolist()
                 if a not in ending]
        return {"payment_terms": terms, "next_steps": steps}

    return kept(("choices", snapshot.get("outcome").run_id), compute)


def reliability(snapshot: Snapshot, events_used: int) -> dict[str, Any] | None:
    """The outcome model's test figures for prefixes of this length (logged by training
    per prefix bucket), or None when the run has none for it."""
    served = snapshot.models.get("outcome")
    if served is None:
        return None
    metrics = kept(("run metrics", served.run_id), lambda: _run_metrics(served.run_id))
    bucket = str(prefix_bucket(np.array([events_used]))[0])
    prefix = f"outcome.prefix_{bucket}."
    found = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
    if "auc" not in found:
        return None
    return {"bucket": bucket.replace("_plus", " or more"), **found}


def _run_metrics(run_id: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient().get_run(run_id).data.metrics)
    except Exception:  # the tracking store unreachable: the page says it has no figures
        return {}
