"""Payments: how long invoices take to be paid, who pays late, and what is still open.

The same invoice, due date and delay as ``features.outcomes.payment_timing`` (what the
payment-delay model predicts; a test holds them equal), computed on the context's
arrays: invoice = first invoice activity, due = invoice + terms (terms as known at the
invoice), delay = payment - due. Without known terms the delay
is counted from the invoice and on-time is undefined.

DSO here is process-level: the mean days from invoice to payment over paid invoices
(the accounting ratio needs balances the event log does not hold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import MICROS_PER_DAY, Context, first_per_case
from insight.partials import InProcess, Runner
from insight.sections import Section

AGING_BUCKETS = (-np.inf, 0.0, 30.0, 60.0, 90.0, np.inf)
AGING_LABELS = ("not yet due", "1-30 days past due", "31-60 days past due",
                "61-90 days past due", "over 90 days past due")
PAYMENT_SEGMENTS = ("account", "payment_terms", "region")


@dataclass
class Payments(Section):
    """``summary``: one row: invoices, paid, open, dso_days (mean invoice to payment),
    median_days_to_pay, median_delay_days, on_time_share (paid by the due date; NaN
    without terms). ``by_segment``: attribute (account, payment_terms, region), segment,
    invoices, paid, open, mean_delay_days, median_delay_days, on_time_share; accounts
    sorted by mean delay. ``aging``: bucket, currency, invoices, value (open invoices by
    days past due at the log's extraction time). ``invoices``: per invoiced case:
    case_id, invoice_time, due_time, payment_time, days_to_pay, delay_days, terms_known."""

    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_segment: pd.DataFrame = field(default_factory=pd.DataFrame)
    aging: pd.DataFrame = field(default_factory=pd.DataFrame)
    invoices: pd.DataFrame = field(default_factory=pd.DataFrame)


def payments(ctx: Context, runner: Runner | None = None) -> Payments:
    """``runner``: where the invoices are read (``insight.partials``; default: this
    process, the whole log as one partition)."""
    roles = ctx.roles
    if not roles.invoice:
        return Payments.unavailable("no invoice activity in the mapping (roles.invoice)")
    if not roles.payment:
        return Payments.unavailable("no payment activity in the mapping (roles.payment)")
    if ctx.codes_of(roles.invoice).size == 0:
        return Payments.unavailable(f"no invoice activity ({', '.join(roles.invoice)}) "
                                    "in the log")
    timing, known_terms = _invoices(ctx, runner)
    if len(timing) == 0:
        return Payments.unavailable("no won case has an invoice")
    pay = timing["payment_time"]
    paid = pay.notna().to_numpy()
    days_to_pay = ((pay - timing["invoice_time"]) / pd.Timedelta(days=1)).to_numpy()
    delay = timing["delay_days"].to_numpy()
    on_time = np.where(paid & known_terms, delay <= 0, np.nan)
    invoices = pd.DataFrame({
        "case_id": timing.index.to_numpy(), "invoice_time": timing["invoice_time"].to_numpy(),
        "due_time": timing["due_time"].to_numpy(), "payment_time": pay.to_numpy(),
        "days_to_pay": days_to_pay, "delay_days": delay, "terms_known": known_terms,
        "on_time": on_time})
    summary = pd.DataFrame([{
        "invoices": len(invoices), "paid": int(paid.sum()), "open": int((~paid).sum()),
        "dso_days": float(np.nanmean(days_to_pay)) if paid.any() else np.nan,
        "median_days_to_pay": float(np.nanmedian(days_to_pay)) if paid.any() else np.nan,
        "median_delay_days": float(np.nanmedian(delay)) if paid.any() else np.nan,
        "on_time_share": float(np.nanmean(on_time)) if (paid & known_terms).any() else np.nan,
    }])
    # only the case columns read below: a copy of the whole case table costs more than
    # the invoices
    attrs = ctx.cases.set_index("case_id")[[c for c in (*PAYMENT_SEGMENTS, "value", "currency")
                                            if c in ctx.cases.columns]]
    joined = invoices.join(attrs, on="case_id", rsuffix="_case")
    parts = []
    for attribute in PAYMENT_SEGMENTS:
        if attribute not in attrs.columns:
            continue
        seg = joined[attribute].astype(object).where(joined[attribute].notna(), "(none)")
        g = joined.groupby(seg.astype(str).to_numpy(), sort=True)
        part = pd.DataFrame({"invoices": g.size(), "paid": g["payment_time"].count(),
                             "mean_delay_days": g["delay_days"].mean(),
                             "median_delay_days": g["delay_days"].median(),
                             "on_time_share": g["on_time"].mean()})
        part["open"] = part["invoices"] - part["paid"]
        part.index.name = "segment"
        part = part.reset_index().assign(attribute=attribute)
        if attribute == "account":
            part = part.sort_values("mean_delay_days", ascending=False, kind="stable")
        parts.append(part)
    by_segment = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(by_segment):
        by_segment = by_segment[["attribute", "segment", "invoices", "paid", "open",
                                 "mean_delay_days", "median_delay_days", "on_time_share"]]
    open_inv = joined[~paid]
    past_due = ((ctx.as_of - open_inv["due_time"]) / pd.Timedelta(days=1)).to_numpy()
    bucket = pd.cut(past_due, AGING_BUCKETS, labels=list(AGING_LABELS))
    currency = (open_inv["currency"].fillna("(currency unknown)") if "currency" in open_inv
                else pd.Series("(currency unknown)", index=open_inv.index))
    value = open_inv["value"] if "value" in open_inv else pd.Series(np.nan, open_inv.index)
    aging = (pd.DataFrame({"bucket": bucket, "currency": currency.to_numpy(),
                           "value": value.to_numpy()})
             .groupby(["bucket", "currency"], observed=True, sort=True)
             .agg(invoices=("value", "size"), value=("value", lambda v: v.sum(min_count=1)))
             .reset_index())
    aging["bucket"] = aging["bucket"].astype(str)
    return Payments(summary=summary, by_segment=by_segment, aging=aging, invoices=invoices)


def invoice_timing(ctx: Context) -> pd.DataFrame:
    """``features.outcomes.payment_timing`` on the context's arrays (much faster on a
    large log: docs/performance.md): per invoiced (won, when wins are defined) case, invoice_time,
    terms_days, due_time, payment_time and delay_days, indexed by case id."""
    return _invoices(ctx, None)[0]


def _invoices(ctx: Context, runner: Runner | None) -> tuple[pd.DataFrame, np.ndarray]:
    """``invoice_timing`` and, per invoice, whether its case's payment terms are known,
    from the partitions' ``invoice_partial``s (invoices in the whole log's case order)."""
    partials, _ = (runner or InProcess(ctx)).run(invoice_partial, None,
                                                  {"number": np.arange(ctx.n_cases)})
    rows = pd.concat([p.invoices for p in partials], ignore_index=True).sort_values(
        "number", kind="stable")
    number = rows["number"].to_numpy(dtype=np.int64)
    due = rows["due"].to_numpy(dtype=np.int64)
    pay = rows["paid"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame({
        "invoice_time": pd.to_datetime(rows["invoice"].to_numpy(dtype=np.int64), unit="us",
                                       utc=True),
        "terms_days": rows["terms_days"].to_numpy(dtype=np.float64),
        "due_time": pd.to_datetime(due, unit="us", utc=True),
        "payment_time": pd.to_datetime(np.where(pay >= 0, pay, np.iinfo(np.int64).min),
                                       unit="us", utc=True),
    }, index=pd.Index(ctx.cases["case_id"].to_numpy()[number], name="case_id"))
    frame["delay_days"] = np.where(pay >= 0, (pay - due) / MICROS_PER_DAY, np.nan)
    return frame, rows["terms_known"].to_numpy(dtype=bool)


@dataclass
class InvoicePartial:
    """A partition's invoices: per invoiced case its ``number`` (in the whole log's
    ``Context``), invoice, due and paid times (us; paid -1: not paid), terms_days, and
    whether the case's payment terms are known (terms_known)."""

    invoices: pd.DataFrame
    values: None = None


def invoice_partial(ctx: Context, number: np.ndarray) -> InvoicePartial:
    roles = ctx.roles
    inv_rows = first_per_case(ctx.case, np.flatnonzero(np.isin(ctx.act,
                                                               ctx.codes_of(roles.invoice))))
    if roles.won:
        inv_rows = inv_rows[ctx.won[ctx.case[inv_rows]]]
    paid_at = ctx.case_first_time(np.isin(ctx.act, ctx.codes_of(roles.payment)))
    if "payment_terms_days" in ctx.events.columns:
        terms = ctx.events["payment_terms_days"].to_numpy(dtype="float64", na_value=np.nan)
        known_case = ctx.case_value("payment_terms_days").notna().to_numpy()
    else:
        terms = np.full(len(ctx.case), np.nan)
        known_case = np.zeros(ctx.n_cases, dtype=bool)
    # terms as known at the invoice: the latest given value of the case at or before it
    known = np.maximum.accumulate(np.where(~np.isnan(terms), np.arange(len(terms)), -1))
    at = known[inv_rows]
    valid = (at >= 0) & (ctx.case[np.maximum(at, 0)] == ctx.case[inv_rows])
    terms_days = np.where(valid, terms[np.maximum(at, 0)], 0.0)
    invoice = ctx.t[inv_rows]
    due = invoice + np.round(terms_days * MICROS_PER_DAY).astype(np.int64)
    case = ctx.case[inv_rows]
    return InvoicePartial(invoices=pd.DataFrame({
        "number": number[case], "invoice": invoice, "terms_days": terms_days, "due": due,
        "paid": paid_at[case], "terms_known": known_case[case]}))
