"""Case outcomes and completion, defined once for the summary, the labels and the API.

The domain brief defines won/lost by the presence of outcome activities; some logs
(BPI Challenge 2012 offers) decide by the last of them instead, which the mapping
selects with ``roles.outcome_rule``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.mapping import Roles
from features.prefixes import Columns, first_row_per_group
from features.schema import text_dtype

WON, LOST, OPEN = "won", "lost", "open"


def outcome_events(events: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Per case: the deciding outcome activity's time and whether it is a win."""
    is_won = events["activity"].isin(roles.won)
    is_lost = events["activity"].isin(roles.lost)
    decisive = events.loc[is_won | is_lost, ["case_id", "timestamp"]].assign(
        won=is_won[is_won | is_lost].to_numpy()
    )
    if roles.outcome_rule == "last_of_won_lost":
        chosen = decisive.groupby("case_id", sort=False).tail(1)
    else:
        chosen = decisive.groupby("case_id", sort=False).head(1)
    return chosen.set_index("case_id")[["timestamp", "won"]].rename(
        columns={"timestamp": "outcome_time"}
    )


def case_outcomes(events: pd.DataFrame | Columns, roles: Roles) -> pd.Series:
    """'won', 'lost' or 'open' per case id (index, in order of appearance), following the
    mapping's rule; events (a frame, or its columns) in time order within each case."""
    codes, cases = pd.factorize(np.asarray(events["case_id"]))
    activity = np.asarray(events["activity"])
    is_won = np.isin(activity, roles.won)
    rows = np.flatnonzero(is_won | np.isin(activity, roles.lost))
    if roles.outcome_rule == "last_of_won_lost":
        rows = rows[::-1]
    deciding = first_row_per_group(codes, rows)  # each case's deciding event
    result = np.full(len(cases), OPEN, dtype=object)
    result[codes[deciding]] = np.where(is_won[deciding], WON, LOST)
    index = pd.Index(cases, name="case_id", dtype=events["case_id"].dtype)
    return pd.Series(result, index=index, name="outcome", dtype=text_dtype(len(cases)))


def completed_cases(events: pd.DataFrame, roles: Roles) -> pd.Series:
    """True per case whose end event (of what remaining time measures: payment or loss,
    by default) is in the log."""
    ended = events["activity"].isin(roles.measure_end_activities)
    return ended.groupby(events["case_id"], sort=False).any().rename("completed")


def first_time_of(events: pd.DataFrame, activities: list[str]) -> pd.Series:
    """Per case, the time of its first event among ``activities`` (absent: not in index)."""
    hits = events.loc[events["activity"].isin(activities), ["case_id", "timestamp"]]
    return hits.groupby("case_id", sort=False)["timestamp"].min()


def terms_at_invoice(events: pd.DataFrame, roles: Roles) -> pd.Series:
    """Per invoiced case, the payment terms as known when the first invoice was issued.

    Terms changed after the invoice do not move its due date (nor, through it, any
    delay that other cases' features count).
    """
    ordered = events.sort_values(["case_id", "timestamp"], kind="stable")
    known = ordered.groupby("case_id", sort=False)["payment_terms_days"].ffill()
    at_invoice = ordered.assign(terms=known)[ordered["activity"].isin(roles.invoice)]
    return at_invoice.groupby("case_id", sort=False)["terms"].first()


def payment_timing(events: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Per invoiced case: invoice time, due time, payment time and the delay in days.

    Delay = payment - (invoice + payment terms); without known terms, payment - invoice
    (the brief's definition). Only won cases count when the mapping defines a win, so a
    lost deal's stray invoice never becomes a payment label. Payment is NaT while unpaid.
    """
    invoice = first_time_of(events, roles.invoice)
    payment = first_time_of(events, roles.payment)
    terms = terms_at_invoice(events, roles)
    frame = pd.DataFrame({"invoice_time": invoice})
    if roles.won:
        won = outcome_events(events, roles)
        won_cases = won.index[won["won"].astype(bool)]
        frame = frame[frame.index.isin(won_cases)]
    frame["terms_days"] = terms.reindex(frame.index).fillna(0.0).astype("float64")
    frame["due_time"] = frame["invoice_time"] + pd.to_timedelta(frame["terms_days"], unit="D")
    frame["payment_time"] = payment.reindex(frame.index)
    late = frame["payment_time"] - frame["due_time"]
    frame["delay_days"] = late / pd.Timedelta(days=1)
    return frame
