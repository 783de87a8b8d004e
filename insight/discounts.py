"""Discounts: how much is given, to whom, what it buys, and where policy is bypassed.

A *quote* is an event with a discount. A case's discount is its last quote's (the one
the customer saw last). A quote above the policy threshold needs an approval activity
after it and before the case's next quote; the wait is quote to first approval. Asking
for approval ("Discount Approval Requested" by default) is not an approval: a quote of an
open case that has only asked is pending, not a violation.
Value given away = case value x discount %, reading the value as the undiscounted amount,
summed per currency (never across currencies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import MICROS_PER_DAY, Context, money
from insight.partials import InProcess, Runner
from insight.sections import Section

BANDS = (-np.inf, 0.0, 5.0, 10.0, 15.0, 20.0, 30.0, np.inf)
BAND_LABELS = ("0%", "0-5%", "5-10%", "10-15%", "15-20%", "20-30%", "over 30%")
#: segments of the by-segment table, when the log has them
DISCOUNT_SEGMENTS = ("rep", "region", "product")
DEFAULT_THRESHOLD = 15.0
DEFAULT_APPROVALS = ("Discount Approved",)
DEFAULT_REQUESTS = ("Discount Approval Requested",)


@dataclass
class Discounts(Section):
    """``distribution``: band, quotes, share (of quotes). ``bands``: band, cases (by the
    case's last discount), won, lost, win_rate, median_cycle_days, median_value (per the
    currency column's values mixed only when one currency), and value_<CUR> per currency.
    ``by_segment``: attribute, segment, cases, mean_discount, median_discount,
    share_above_threshold, win_rate. ``policy``: one row: threshold, quotes_above,
    with_approval, without_approval, pending (not approved, in an open case that has done
    nothing since but ask for approval: it may still come), median_wait_days,
    p90_wait_days, won_cases_above, share_of_won_above. ``violations``: the quotes above
    the threshold without approval: case_id, time, discount_pct, rep.
    ``given_away``: currency -> value given away on won cases. ``policy_note``: why the
    policy check is missing, if it is. ``case_discount``: per case (by number) its last
    discount (NaN: none), for the segments table."""

    distribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    bands: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_segment: pd.DataFrame = field(default_factory=pd.DataFrame)
    policy: pd.DataFrame = field(default_factory=pd.DataFrame)
    violations: pd.DataFrame = field(default_factory=pd.DataFrame)
    given_away: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    policy_note: str | None = None
    case_discount: np.ndarray = field(default_factory=lambda: np.zeros(0))


def discounts(ctx: Context, threshold: float | None = DEFAULT_THRESHOLD,
              approval_activities: list[str] | tuple[str, ...] = DEFAULT_APPROVALS,
              request_activities: list[str] | tuple[str, ...] = DEFAULT_REQUESTS,
              runner: Runner | None = None) -> Discounts:
    """``runner``: where the quotes are read (``insight.partials``; default: this
    process, the whole log as one partition)."""
    if "discount_pct" not in ctx.events.columns or not ctx.has_column("discount_pct"):
        return Discounts.unavailable("no discount column mapped (or no event has a "
                                     "discount)")
    partials, _ = (runner or InProcess(ctx)).run(
        quote_partial, None, {"number": np.arange(ctx.n_cases)},
        approvals=list(approval_activities), requests=list(request_activities))
    # the quotes in the whole log's order: by case number, then within the case
    quotes = pd.concat([p.quotes for p in partials], ignore_index=True).sort_values(
        ["number", "row"], kind="stable").reset_index(drop=True)
    case_disc = np.full(ctx.n_cases, np.nan)
    for p in partials:  # a loop over partitions
        case_disc[p.number] = p.case_discount
    q_disc = quotes["discount_pct"].to_numpy(dtype=np.float64)
    band = pd.cut(q_disc, BANDS, labels=list(BAND_LABELS))
    dist = pd.Series(band).value_counts(sort=False).reindex(list(BAND_LABELS), fill_value=0)
    distribution = pd.DataFrame({"band": dist.index.astype(str), "quotes": dist.to_numpy(),
                                 "share": dist.to_numpy() / len(q_disc)})

    has_disc = ~np.isnan(case_disc)
    case_band = pd.cut(case_disc, BANDS, labels=list(BAND_LABELS))
    cases = ctx.cases
    frame = pd.DataFrame({"band": case_band, "won": ctx.won, "lost": ctx.lost,
                          "cycle": cases["cycle_days"].where(cases["completed"]).to_numpy(),
                          "value": cases["value"].to_numpy() if "value" in cases else np.nan,
                          "currency": cases["currency"].to_numpy() if "currency" in cases
                          else None})[has_disc]
    g = frame.groupby("band", observed=False, sort=False)
    bands = pd.DataFrame({"cases": g.size(), "won": g["won"].sum(), "lost": g["lost"].sum(),
                          "median_cycle_days": g["cycle"].median()}
                         ).reindex(list(BAND_LABELS))
    bands["win_rate"] = bands["won"] / (bands["won"] + bands["lost"])
    if "value" in cases.columns:
        for cur, part in frame.groupby(frame["currency"].fillna("(currency unknown)")):
            bands[f"value_{cur}"] = part.groupby("band", observed=False)["value"].sum(
                min_count=1).reindex(list(BAND_LABELS))
    bands = bands.reset_index().rename(columns={"index": "band"})
    bands["band"] = bands["band"].astype(str)

    above_case = has_disc & (case_disc > threshold) if threshold is not None else None
    seg_frame = pd.DataFrame({"disc": case_disc, "won": ctx.won, "lost": ctx.lost,
                              "above": above_case if above_case is not None else np.nan})
    parts = []
    for attribute in DISCOUNT_SEGMENTS:
        if attribute not in cases.columns:
            continue
        seg, names = ctx.segment_codes(attribute)
        sub = seg_frame[has_disc]
        gg = sub.groupby(seg[has_disc], sort=True)
        part = pd.DataFrame({"cases": gg.size(), "mean_discount": gg["disc"].mean(),
                             "median_discount": gg["disc"].median(),
                             "share_above_threshold": gg["above"].mean(),
                             "won": gg["won"].sum(), "lost": gg["lost"].sum()})
        part["win_rate"] = part["won"] / (part["won"] + part["lost"])
        part.index = names.take(part.index.to_numpy())
        part.index.name = "segment"
        parts.append(part.drop(columns=["won", "lost"]).reset_index().assign(
            attribute=attribute))
    by_segment = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(by_segment):
        by_segment = by_segment[["attribute", "segment", "cases", "mean_discount",
                                 "median_discount", "share_above_threshold", "win_rate"]]

    given = {}
    if "value" in cases.columns:
        won_disc = ctx.won & has_disc
        given = money(cases["value"].to_numpy()[won_disc] * case_disc[won_disc] / 100.0,
                      cases["currency"].to_numpy()[won_disc] if "currency" in cases else None)

    result = Discounts(distribution=distribution, bands=bands, by_segment=by_segment,
                       given_away=given, threshold=threshold, case_discount=case_disc)
    _policy(ctx, result, quotes, threshold, list(approval_activities), above_case)
    return result


def _policy(ctx: Context, result: Discounts, quotes: pd.DataFrame, threshold: float | None,
            approvals: list[str], above_case: np.ndarray | None) -> None:
    if threshold is None:
        result.policy_note = "no discount policy threshold given"
        return
    if ctx.codes_of(approvals).size == 0:
        result.policy_note = (f"none of the approval activities {approvals} is in the log: "
                              "approvals cannot be checked")
        return
    disc = quotes["discount_pct"].to_numpy(dtype=np.float64)
    first_appr = quotes["approved_at"].to_numpy(dtype=np.int64)
    quoted_at = quotes["time"].to_numpy(dtype=np.int64)
    decided = quotes["decided"].to_numpy(dtype=bool)
    number = quotes["number"].to_numpy(dtype=np.int64)
    above = disc > threshold
    approved = first_appr >= 0
    wait = (first_appr - quoted_at) / MICROS_PER_DAY
    waits = wait[above & approved]
    won = ctx.won
    won_above = int((won & above_case).sum()) if above_case is not None else 0
    result.policy = pd.DataFrame([{
        "threshold": threshold, "quotes_above": int(above.sum()),
        "with_approval": int((above & approved).sum()),
        "without_approval": int((above & ~approved & decided).sum()),
        "pending": int((above & ~approved & ~decided).sum()),
        "median_wait_days": float(np.median(waits)) if waits.size else np.nan,
        "p90_wait_days": float(np.quantile(waits, 0.9)) if waits.size else np.nan,
        "won_cases_above": won_above,
        "share_of_won_above": won_above / won.sum() if won.sum() else np.nan,
    }])
    bad = np.flatnonzero(above & ~approved & decided)
    result.violations = pd.DataFrame({
        "case_id": ctx.cases["case_id"].to_numpy()[number[bad]],
        "time": pd.to_datetime(quoted_at[bad], unit="us", utc=True),
        "discount_pct": disc[bad],
        "rep": ctx.cases["rep"].to_numpy()[number[bad]] if "rep" in ctx.cases else None,
    })


@dataclass
class QuotePartial:
    """A partition's quotes: ``quotes``: per quote its case ``number`` (in the whole
    log's ``Context``), ``row`` within the case, time, discount_pct, approved_at (its
    first approval, us; -1: none) and decided (see ``_policy``); ``case_discount``: per
    case of ``number`` its last discount (NaN: none)."""

    number: np.ndarray
    quotes: pd.DataFrame
    case_discount: np.ndarray
    values: None = None


def quote_partial(ctx: Context, number: np.ndarray, approvals: list[str], requests: list[str]
                  ) -> QuotePartial:
    disc = ctx.events["discount_pct"].to_numpy(dtype="float64", na_value=np.nan)
    quote_mask = ~np.isnan(disc)
    q_rows = np.flatnonzero(quote_mask)
    # each event's quote window: the number of quotes so far in the log; an approval
    # belongs to the latest quote of its own case before it
    window = np.cumsum(quote_mask) - 1
    is_appr = np.isin(ctx.act, ctx.codes_of(approvals))
    appr_rows = np.flatnonzero(is_appr & (window >= 0))
    appr_rows = appr_rows[ctx.case[appr_rows] == ctx.case[q_rows[window[appr_rows]]]]
    first_appr = np.full(len(q_rows), -1, dtype=np.int64)
    if appr_rows.size:
        w = window[appr_rows]  # non-decreasing along the rows: first of each run
        first = np.r_[True, w[1:] != w[:-1]]
        first_appr[w[first]] = ctx.t[appr_rows[first]]
    # an approval may still come while the case has only asked for it since the quote:
    # a quote is decided once its case is completed or moves on (any event after it other
    # than an approval request)
    own = np.flatnonzero(window >= 0)
    own = own[ctx.case[own] == ctx.case[q_rows[window[own]]]]
    moves_on = own[~quote_mask[own] & ~np.isin(ctx.act[own], ctx.codes_of(list(requests)))]
    moved = np.bincount(window[moves_on], minlength=len(q_rows)) > 0
    later_quote = np.r_[ctx.case[q_rows][1:] == ctx.case[q_rows][:-1], False]
    completed = ctx.cases["completed"].to_numpy()[ctx.case[q_rows]]
    return QuotePartial(number=number, quotes=pd.DataFrame({
        "number": number[ctx.case[q_rows]], "row": ctx.position[q_rows],
        "time": ctx.t[q_rows], "discount_pct": disc[q_rows], "approved_at": first_appr,
        "decided": later_quote | completed | moved}),
        case_discount=ctx.case_value("discount_pct", how="last").to_numpy(dtype="float64"))
