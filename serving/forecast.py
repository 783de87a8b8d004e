"""Pipeline forecast: expected bookings and cash per month, with ranges from simulation.

Each open deal is won with its predicted probability; its end (for a won deal, the
payment) is drawn from its remaining-time prediction, read as a distribution through
its 10/50/90% points; bookings land a typical win-to-payment lag before the cash. The
P10/P50/P90 of many such simulated futures give the ranges. Deals are simulated
independently: a shock that hits all deals at once (a recession) is not in the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from features.outcomes import first_time_of
from serving.caveats import served_caveats
from serving.errors import NothingToForecastError
from serving.scoring import score_log
from serving.store import ModelsNotLoadedError, Snapshot

#: what a forecast reads: who wins, and when each deal ends
FORECAST_TARGETS = ("outcome", "remaining_time")


def require_forecast_models(snapshot: Snapshot) -> None:
    """Refuse (503) when a model the forecast reads is not served, naming it."""
    missing = [t for t in FORECAST_TARGETS if t not in snapshot.models]
    if missing:
        raise ModelsNotLoadedError(
            f"the forecast needs the {' and '.join(missing)} model(s), not served now: train "
            "(`l2c train LOG`) and promote them, then POST /v1/models/reload")

_Z90 = 1.2815515655446004  # standard normal 90% point
#: deals x simulations drawn at once (see ``simulate``)
CHUNK_CELLS = 1_000_000


def _band(samples: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(samples, [10, 50, 90])
    return {"expected": float(samples.mean()), "p10": float(p10), "p50": float(p50),
            "p90": float(p90)}


def draw_remaining(point: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   z: np.ndarray) -> np.ndarray:
    """Days drawn through the (P10, P50, P90) points, piecewise linear in z, never < 0."""
    below = point + (point - lower) * z / _Z90
    above = point + (upper - point) * z / _Z90
    return np.maximum(np.where(z < 0, below, above), 0.0)


def win_to_payment_lags(log: EventLog) -> pd.Series:
    """Days from the win to the payment of every paid won case of the log."""
    roles = log.mapping.roles
    won = first_time_of(log.events, roles.won)
    paid = first_time_of(log.events, roles.payment)
    return (paid.reindex(won.index) - won).dropna() / pd.Timedelta(days=1)


def won_awaiting_payment(log: EventLog, status: pd.Series,
                         lags: pd.Series) -> tuple[pd.Index, list[str]]:
    """Won cases whose payment is still to come, and what was left out and why.

    Only when the mapping names a payment activity (else no won case ever looks paid),
    and, once the log shows at least 20 paid wins, only wins younger than the 95th
    percentile of their win-to-payment lag: an older unpaid win is a write-off or a gap
    in the export, not cash next month.
    """
    won = status.index[status == "won"]
    if not log.mapping.roles.payment:
        return won[:0], [f"{len(won)} won deal(s) not forecast as cash: the mapping names "
                         "no payment activity"] if len(won) else []
    if len(lags) < 20:
        return won, []
    as_of = log.events["timestamp"].max()
    won_at = first_time_of(log.events, log.mapping.roles.won).reindex(won)
    limit = float(lags.quantile(0.95))
    fresh = ((as_of - won_at) / pd.Timedelta(days=1) <= limit).to_numpy()
    stale = int((~fresh).sum())
    notes = [f"{stale} won deal(s) unpaid for longer than {limit:.0f} days (95% of paid wins "
             "paid sooner) are not forecast as cash"] if stale else []
    return won[fresh], notes


def forecast(snapshot: Snapshot, log: EventLog, source: str, group_by: str | None,
             months: int, simulations: int, top: int = 10, seed: int = 0) -> dict[str, Any]:
    """Bookings from open deals; cash from open deals and from won deals not yet paid
    (already booked, so certain to pay, only the timing is drawn)."""
    require_forecast_models(snapshot)
    events = log.events
    as_of = events["timestamp"].max()
    scored = score_log(snapshot, log)
    lags = win_to_payment_lags(log)
    awaiting, left_out = won_awaiting_payment(log, scored.status, lags)
    pending = scored.status.index[(scored.status == "open") | scored.status.index.isin(awaiting)]
    refused = pending[pending.isin(list(scored.refused))]
    if len(refused):
        pending = pending.difference(refused, sort=False)
        left_out.append(f"{len(refused)} deal(s) not forecast: an input is not a finite "
                        f"number, e.g. {', '.join(map(str, refused[:5]))}")
    if len(pending) == 0:
        raise NothingToForecastError(f"{source}: no open or won-but-unpaid case to forecast")
    is_open = (scored.status.reindex(pending) == "open").to_numpy()
    p = scored.scores["outcome"].frame().set_index("case_id")["p_win"].reindex(pending)
    p = pd.Series(np.where(is_open, p.to_numpy(), 1.0), index=pending)
    remaining = scored.scores["remaining_time"].frame().set_index("case_id").reindex(
        pending)
    last = events[events["case_id"].isin(pending)].groupby("case_id", sort=False).last()
    last = last.reindex(pending)
    without_value = last["value"].isna().to_numpy()
    value = last["value"].fillna(0.0).to_numpy(dtype=float)
    with np.errstate(over="ignore"):  # an overflow is the finding here, not a warning
        total = value.sum()
    if not np.isfinite(total):  # all amounts are >= 0: every partial sum is finite too
        top = int(np.nanargmax(np.where(np.isfinite(value), value, np.inf)))
        raise NothingToForecastError(
            f"{source}: deal values too large to add up, e.g. case {pending[top]} with "
            f"value {value[top]:.6g}; correct the amounts")
    lag = float(lags.median()) if len(lags) else 0.0

    start = as_of.tz_convert("UTC").tz_localize(None).to_period("M")
    # day offsets (from as_of) at which each following month begins
    ends = np.array([((start + i + 1).to_timestamp() - as_of.tz_localize(None))
                     / pd.Timedelta(days=1) for i in range(months)])
    deals = Deals(p=p.to_numpy(dtype=float), value=value, is_open=is_open,
                  point=remaining["prediction_days"].to_numpy(dtype=float),
                  lower=remaining["lower_days"].to_numpy(dtype=float),
                  upper=remaining["upper_days"].to_numpy(dtype=float),
                  elapsed=(as_of - last["timestamp"]).dt.total_seconds().to_numpy() / 86400.0)
    groups = (None if group_by is None
              else last[group_by].astype("object").fillna("(missing)").to_numpy())
    group_codes, group_names = (np.zeros(len(p), dtype=np.int64), np.array([None])
                                ) if groups is None else pd.factorize(groups)
    sums = simulate(deals, ends, lag, simulations, group_codes, len(group_names), seed)
    bookings, cash = sums.bookings, sums.cash
    labels = [str(start + i) for i in range(months)]
    result: dict[str, Any] = {
        "source": source, "as_of": as_of, "open_cases": int(is_open.sum()),
        "won_unpaid_cases": int((~is_open).sum()),
        "deals_without_value": int(without_value.sum()), "simulations": simulations,
        "currency_note": _currency_note(last),
        "total_bookings": _band(bookings.sum(axis=1)), "total_cash_in": _band(cash.sum(axis=1)),
        "months": [{"month": labels[i], "bookings": _band(bookings[:, i]),
                    "cash_in": _band(cash[:, i])} for i in range(months)],
        "group_by": group_by, "groups": [],
        "assumptions": [
            "each open deal is won with its calibrated win probability, independently",
            "won deals not yet paid pay for certain; only their timing is drawn",
            "time to the end of a won deal (its payment) follows the remaining-time "
            "prediction's 10/50/90% points",
            f"bookings land {lag:.0f} days (the log's median win-to-payment lag) before cash; "
            "a deal expected to pay sooner than that is booked now",
            f"only the next {months} months are counted",
        ],
    }
    result["assumptions"] += left_out
    # a forecast is only as sound as its models: a thin or baseline one is said here too
    result["assumptions"] += [c.text for c in served_caveats(snapshot)
                              if c.target in FORECAST_TARGETS]
    if without_value.any():
        result["assumptions"].append(
            f"{int(without_value.sum())} deal(s) have no value and count as 0: "
            f"e.g. {', '.join(map(str, pending[without_value][:5]))}")
    sd = value * np.sqrt(p.to_numpy() * (1 - p.to_numpy()))
    if groups is not None:
        for code, group in enumerate(group_names):
            inside = group_codes == code
            result["groups"].append({
                "group": str(group), "open_cases": int((inside & is_open).sum()),
                "won_unpaid_cases": int((inside & ~is_open).sum()),
                "bookings": _band(sums.group_bookings[:, code]),
                "cash_in": _band(sums.group_cash[:, code])})
        result["groups"].sort(key=lambda g: -g["bookings"]["expected"])
    order = np.argsort(-sd)[:top]
    result["movers"] = [{
        "case_id": str(p.index[i]), "value": float(value[i]), "win_probability": float(p.iloc[i]),
        "expected_bookings": float(value[i] * p.iloc[i]), "bookings_sd": float(sd[i]),
        "group": None if group_by is None else str(last[group_by].iloc[i])} for i in order]
    return result


@dataclass(frozen=True)
class Deals:
    """What the simulation reads per deal: win probability (1 for a won deal awaiting
    payment), value, open or not, the remaining-time prediction's P50 / P10 / P90 in
    days, and the days since its last event."""

    p: np.ndarray
    value: np.ndarray
    is_open: np.ndarray
    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    elapsed: np.ndarray


@dataclass(frozen=True)
class Sums:
    """Per simulation: bookings and cash per month (simulations x months), and per
    group within the horizon (simulations x groups)."""

    bookings: np.ndarray
    cash: np.ndarray
    group_bookings: np.ndarray
    group_cash: np.ndarray


def simulate(deals: Deals, ends: np.ndarray, lag: float, simulations: int,
             group_codes: np.ndarray, n_groups: int, seed: int,
             cells: int = CHUNK_CELLS) -> Sums:
    """The simulated futures' sums, drawn a few simulations at a time.

    One simulation of every deal at once would hold several arrays of simulations x
    deals (gigabytes for a pipeline of 100k deals); here at most ``cells`` of each.
    Wins and remaining times come from two streams of their own, each drawn in order,
    so the result does not depend on ``cells``.
    """
    n, months = len(deals.p), len(ends)
    won_rng, days_rng = (np.random.default_rng(s)
                         for s in np.random.SeedSequence(seed).spawn(2))
    out = Sums(*(np.zeros((simulations, k)) for k in (months, months, n_groups, n_groups)))
    rows = max(1, cells // max(n, 1))
    for first in range(0, simulations, rows):
        count = min(rows, simulations - first)
        won = won_rng.random((count, n)) < deals.p[None, :]
        days = draw_remaining(deals.point, deals.lower, deals.upper,
                              days_rng.standard_normal((count, n)))
        cash_day = np.maximum(days - deals.elapsed[None, :], 0.0)  # days after as_of
        del days
        booked_month = np.searchsorted(ends, np.maximum(cash_day - lag, 0.0), side="right")
        booked_month[:, ~deals.is_open] = months  # booked before as_of: outside the horizon
        cash_month = np.searchsorted(ends, cash_day, side="right")
        money = np.where(won, deals.value[None, :], 0.0)
        done = slice(first, first + count)
        for month, by_month, by_group in ((booked_month, out.bookings, out.group_bookings),
                                          (cash_month, out.cash, out.group_cash)):
            inside = month < months
            sim = np.broadcast_to(np.arange(count)[:, None], month.shape)[inside]
            weights = money[inside]
            by_month[done] = np.bincount(sim * months + month[inside], weights=weights,
                                         minlength=count * months).reshape(count, months)
            by_group[done] = np.bincount(
                sim * n_groups + np.broadcast_to(group_codes, month.shape)[inside],
                weights=weights, minlength=count * n_groups).reshape(count, n_groups)
    return out


def _currency_note(last: pd.DataFrame) -> str:
    currencies = sorted(last["currency"].dropna().unique().tolist())
    if len(currencies) > 1:
        return ("amounts are summed as exported across currencies "
                f"{', '.join(currencies)}: group by region or convert before reading totals")
    return f"amounts in {currencies[0]}" if currencies else "amounts as exported"
