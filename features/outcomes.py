"""Case outcomes and completion, defined once for the summary, the labels and scoring.

The domain brief defines won/lost by the presence of outcome activities; some logs
(BPI Challenge 2012 offers) decide by the last of them instead, which the mapping
selects with ``roles.outcome_rule``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.mapping import Roles
from features.prefixes import Columns, epoch_micros, first_row_per_group
from features.schema import text_dtype

WON, LOST, OPEN = "won", "lost", "open"


@dataclass(frozen=True)
class Decisions:
    """Per case (in order of first row) under 'won_else_lost': how it was decided.

    ``row``: the deciding row (a win, or a lost/end activity), or the last row before
    the silence that lost it, -1 while open; ``silent``: lost by silence (the rows up to
    ``row`` all come before the loss); ``time``: when the verdict became known.
    """

    row: np.ndarray
    silent: np.ndarray
    won: np.ndarray
    time: np.ndarray  # datetime64[us], NaT while open


def decide_by_absence(case_ids: np.ndarray, times: np.ndarray, activity: np.ndarray,
                      roles: Roles, extraction: np.datetime64 | None) -> Decisions:
    """Won if a won activity comes first; lost if a lost or case-end activity comes
    first, or the case falls silent for ``lost_after_days`` first.

    Rows sorted by case and time; ``times`` as datetime64[us]. The silence counts up to
    the next event, and after the last one up to ``extraction`` (None: no end, so a
    silence is complete once it has lasted; what comes later never undoes it: a verdict
    depends only on events up to its own time, as cross-case facts need).
    """
    codes, _ = pd.factorize(case_ids)
    n_cases = int(codes.max()) + 1 if len(codes) else 0
    micros = times.astype("datetime64[us]").astype("int64")
    never = np.iinfo(np.int64).max
    is_won = np.isin(activity, roles.won)
    is_lost = np.isin(activity, [*roles.lost, *roles.end_activities]) & ~is_won
    candidates = {"won": is_won, "lost": is_lost}
    first_at = {}
    for name, mask in candidates.items():
        rows = np.flatnonzero(mask)
        at = np.full(n_cases, -1)
        picked = first_row_per_group(codes, rows)
        at[codes[picked]] = picked
        first_at[name] = at
    silent_at = np.full(n_cases, -1)
    if roles.lost_after_days is not None:
        span = int(roles.lost_after_days * 86_400_000_000)
        following = np.r_[micros[1:], never]
        last_of_case = np.r_[codes[1:] != codes[:-1], True]
        end = never if extraction is None else int(
            np.datetime64(extraction, "us").astype("int64"))
        following[last_of_case] = end
        gap = np.subtract(following, micros, out=np.full(len(micros), -1, dtype=np.int64),
                          where=following != never)
        quiet = np.flatnonzero((gap >= span) | (last_of_case & (end == never)))
        picked = first_row_per_group(codes, quiet)
        silent_at[codes[picked]] = picked
    decided_time = np.full((3, n_cases), never)
    for i, at in enumerate((first_at["won"], first_at["lost"])):
        decided_time[i, at >= 0] = micros[at[at >= 0]]
    if roles.lost_after_days is not None:
        has = silent_at >= 0
        decided_time[2, has] = micros[silent_at[has]] + int(roles.lost_after_days * 86_400e6)
    which = np.argmin(decided_time, axis=0)  # ties: the win, then a lost activity
    when = decided_time[which, np.arange(n_cases)]
    open_ = when == never
    row = np.choose(which, [first_at["won"], first_at["lost"], silent_at])
    row[open_] = -1
    time = when.astype("datetime64[us]")
    time[open_] = np.datetime64("NaT")
    return Decisions(row=row, silent=(which == 2) & ~open_, won=(which == 0) & ~open_,
                     time=time)


def outcome_events(events: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Per case: the deciding outcome activity's time and whether it is a win."""
    if roles.outcome_rule == "won_else_lost":
        ordered = events.sort_values(["case_id", "timestamp"], kind="stable")
        decided = decide_by_absence(ordered["case_id"].to_numpy(), _utc_micros(ordered),
                                    ordered["activity"].to_numpy(), roles,
                                    _utc_micros(ordered).max() if len(ordered) else None)
        ids = pd.unique(ordered["case_id"])
        found = decided.row >= 0
        return pd.DataFrame({"outcome_time": pd.to_datetime(decided.time[found], utc=True),
                             "won": decided.won[found]},
                            index=pd.Index(ids[found], name="case_id"))
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
    if roles.outcome_rule == "won_else_lost":
        times = _utc_micros(events)
        decided = decide_by_absence(np.asarray(events["case_id"]), times, activity, roles,
                                    times.max() if len(times) else None)
        verdict = np.where(decided.won, WON, np.where(decided.row >= 0, LOST, OPEN))
        index = pd.Index(cases, name="case_id", dtype=events["case_id"].dtype)
        return pd.Series(verdict.astype(object), index=index, name="outcome",
                         dtype=text_dtype(len(cases)))
    is_won = np.isin(activity, roles.won)
    rows = np.flatnonzero(is_won | np.isin(activity, roles.lost))
    if roles.outcome_rule == "last_of_won_lost":
        rows = rows[::-1]
    deciding = first_row_per_group(codes, rows)  # each case's deciding event
    result = np.full(len(cases), OPEN, dtype=object)
    result[codes[deciding]] = np.where(is_won[deciding], WON, LOST)
    index = pd.Index(cases, name="case_id", dtype=events["case_id"].dtype)
    return pd.Series(result, index=index, name="outcome", dtype=text_dtype(len(cases)))


def _utc_micros(events: pd.DataFrame | Columns) -> np.ndarray:
    """The events' times as datetime64[us] (UTC)."""
    return epoch_micros(events["timestamp"]).view("datetime64[us]")


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
