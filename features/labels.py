"""Labels for the three targets, per prefix, exactly as the domain brief defines them.

Labels live in their own frame and are computed from the whole case (its future
included); features never read this frame, nor the label-only columns (lost reason).
Each target comes with a ``*_usable`` flag (the prefix ends before the target is
known, so there is something to predict) and, where the case is still open when the
log was extracted, a censoring flag with the lower bound the log does give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.mapping import Roles
from features.outcomes import decide_by_absence, payment_timing
from features.prefixes import KEY_COLUMNS, days_between, epoch_micros

_DAY = pd.Timedelta(days=1)


def _position_of(prepared: pd.DataFrame, mask: pd.Series, which: str) -> pd.Series:
    """Per case, the prefix length of its first/last row where ``mask`` holds."""
    rows = prepared.loc[mask, ["case_id", "prefix_len"]].groupby("case_id", sort=False)
    return (rows.head(1) if which == "first" else rows.tail(1)).set_index("case_id")["prefix_len"]


def _decided_by_absence(prepared: pd.DataFrame, roles: Roles,
                        extraction_time: pd.Timestamp) -> tuple[pd.Series, pd.Series]:
    """Per row: the prefix length from which its case's verdict is known (NaN while
    open), and whether that verdict is a win. A case lost by silence is decided after
    its last event before the silence: every prefix up to that event is usable."""
    times = epoch_micros(prepared["timestamp"]).view("datetime64[us]")
    end = np.datetime64(extraction_time.tz_convert("UTC").tz_localize(None), "us")
    decided = decide_by_absence(prepared["case_id"].to_numpy(), times,
                                prepared["activity"].to_numpy(), roles, end)
    codes, _ = pd.factorize(prepared["case_id"].to_numpy())
    k = prepared["prefix_len"].to_numpy()
    per_case = np.full(len(decided.row), np.nan)
    found = decided.row >= 0
    per_case[found] = k[decided.row[found]] + decided.silent[found]
    return (pd.Series(per_case[codes], index=prepared.index),
            pd.Series(decided.won[codes], index=prepared.index))


def build_labels(prepared: pd.DataFrame, roles: Roles,
                 extraction_time: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per prefix row of ``prepared`` (same order) with every target's label.

    Columns: ``won`` (1/0, NaN when undecided), ``outcome_usable``; ``remaining_days``,
    ``remaining_censored``, ``remaining_usable``; ``payment_delay_days``,
    ``payment_censored``, ``payment_usable``. ``extraction_time`` (default: the last
    event of the log) is where censored cases stop being observed.
    """
    extraction_time = extraction_time or prepared["timestamp"].max()
    case = prepared["case_id"]
    k = prepared["prefix_len"]
    labels = prepared[list(KEY_COLUMNS)].copy()

    if roles.outcome_rule == "won_else_lost":
        outcome_k, decided_won = _decided_by_absence(prepared, roles, extraction_time)
    else:
        is_won = prepared["activity"].isin(roles.won)
        decisive = is_won | prepared["activity"].isin(roles.lost)
        which = "last" if roles.outcome_rule == "last_of_won_lost" else "first"
        k_outcome = _position_of(prepared, decisive, which)
        won_at = _position_of(prepared, decisive & is_won, which)
        outcome_k = case.map(k_outcome)
        decided_won = case.map(won_at) == outcome_k
    labels["won"] = np.where(outcome_k.notna(), decided_won.astype("float64"), np.nan)
    labels["outcome_usable"] = (k < outcome_k).to_numpy()

    ends = roles.measure_end_activities
    if ends:
        end_mask = prepared["activity"].isin(ends)
        k_end = case.map(_position_of(prepared, end_mask, "first"))
    else:  # no end activity known: each case is complete at its last event
        k_end = case.map(prepared.groupby("case_id", sort=False)["prefix_len"].max())
    end_time = prepared["timestamp"].where(k == k_end).groupby(case, sort=False).transform("max")
    completed = k_end.notna()
    remaining = days_between(end_time.fillna(extraction_time), prepared["timestamp"])
    labels["remaining_days"] = remaining
    labels["remaining_censored"] = (~completed).to_numpy()
    labels["remaining_usable"] = ((k < k_end) | ~completed).to_numpy()
    labels.loc[~completed, "remaining_days"] = days_between(
        pd.Series(extraction_time, index=prepared.index)[~completed],
        prepared["timestamp"][~completed])

    pay = payment_timing(prepared, roles)
    delay = case.map(pay["delay_days"])
    k_pay = case.map(_position_of(prepared, prepared["activity"].isin(roles.payment), "first"))
    invoiced = case.isin(pay.index)
    unpaid = invoiced & k_pay.isna()
    labels["payment_delay_days"] = delay.astype("float64").to_numpy()
    labels["payment_censored"] = unpaid.to_numpy()
    labels["payment_usable"] = ((invoiced & (k < k_pay) & delay.notna()) | unpaid).to_numpy()
    if unpaid.any():  # lower bound: already this late at extraction (can be negative)
        due = case.map(pay["due_time"])[unpaid]
        labels.loc[unpaid, "payment_delay_days"] = (extraction_time - due) / _DAY
    return labels.reset_index(drop=True)
