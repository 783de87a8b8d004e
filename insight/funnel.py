"""Funnel: how many cases reach each milestone, and how long the steps between take.

Milestones are groups of activities (a case reaches "Won" with any won activity). By
default they are the Lead-to-Cash milestones whatever the log has of them: lead,
opportunity, qualified and quote by their canonical activity names, then won, invoiced
and paid from the mapping's roles, in the order cases reach them (mean time from the
case's start); a log with fewer than two of those uses its expected order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import MICROS_PER_DAY, Context
from insight.sections import Section

#: label -> canonical activities of the named milestones before the roles' ones
NAMED_MILESTONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Lead", ("Lead Captured",)),
    ("Opportunity", ("Opportunity Created",)),
    ("Qualified", ("Opportunity Qualified",)),
    ("Quote", ("Quote Issued",)),
)

Milestones = list[tuple[str, list[str]]]


@dataclass
class Funnel(Section):
    """``steps``: step (1..), milestone, activities, cases (reaching it), share_of_first,
    from_previous (cases that reached both it and the previous step), conversion
    (from_previous / cases at the previous step), drop_off (1 - conversion), open_at_previous
    (cases at the previous step, not here, still open: not yet a drop-off), median_days
    and p90_days (previous step's first event to this step's first event)."""

    steps: pd.DataFrame = field(default_factory=pd.DataFrame)


def default_milestones(ctx: Context) -> Milestones:
    roles = ctx.roles
    present = set(ctx.activity_names)
    candidates: Milestones = [(label, list(acts)) for label, acts in NAMED_MILESTONES]
    candidates += [("Won", roles.won), ("Invoiced", roles.invoice), ("Paid", roles.payment)]
    chosen: Milestones = []
    for label, acts in candidates:  # a role naming the same activities twice counts once
        kept = [a for a in acts if a in present]
        if kept and all(set(kept) != set(c) for _, c in chosen):
            chosen.append((label, kept))
    if len(chosen) < 2:
        return [(a, [a]) for a in roles.expected_order if a in present]
    return _in_case_order(ctx, chosen)


def _in_case_order(ctx: Context, steps: Milestones) -> Milestones:
    """Steps in the order cases reach them: a step goes before another when most cases
    that reach both reach it first (traffic fines are notified before they are paid,
    although fines paid on the spot reach payment sooner on average)."""
    first = np.stack([ctx.case_first_time(np.isin(ctx.act, ctx.codes_of(acts)))
                      for _, acts in steps])
    m = len(steps)
    wins = np.zeros(m)
    for i in range(m):  # a handful of steps: pairs, each vectorised over cases
        for j in range(m):
            both = (first[i] >= 0) & (first[j] >= 0)
            if i != j and both.any() and (first[i][both] < first[j][both]).mean() > 0.5:
                wins[i] += 1
    order = sorted(range(m), key=lambda i: (-wins[i], i))
    return [steps[i] for i in order]


def funnel(ctx: Context, milestones: Milestones | None = None) -> Funnel:
    steps = milestones if milestones is not None else default_milestones(ctx)
    steps = [(label, [a for a in acts if a in set(ctx.activity_names)]) for label, acts in steps]
    missing = [label for label, acts in steps if not acts]
    steps = [(label, acts) for label, acts in steps if acts]
    if len(steps) < 2:
        why = ("no milestones: the log has fewer than two of lead, opportunity, qualified, "
               "quote, won, invoiced, paid (map the won/invoice/payment roles or the "
               "expected_order, or pass milestones)")
        if missing:
            why += f"; absent from the log: {', '.join(missing)}"
        return Funnel.unavailable(why)
    open_case = ~ctx.cases["completed"].to_numpy()
    rows = []
    prev_time = None
    first_cases = None
    for i, (label, acts) in enumerate(steps):
        reached_t = ctx.case_first_time(np.isin(ctx.act, ctx.codes_of(acts)))
        reached = reached_t >= 0
        n = int(reached.sum())
        if first_cases is None:
            first_cases = n
        row = {"step": i + 1, "milestone": label, "activities": ", ".join(acts), "cases": n,
               "share_of_first": n / first_cases if first_cases else np.nan}
        if prev_time is None:
            row.update(from_previous=np.nan, conversion=np.nan, drop_off=np.nan,
                       open_at_previous=np.nan, median_days=np.nan, p90_days=np.nan)
        else:
            was = prev_time >= 0
            both = was & reached
            gap = (reached_t[both] - prev_time[both]) / MICROS_PER_DAY
            conv = both.sum() / was.sum() if was.sum() else np.nan
            row.update(from_previous=int(both.sum()), conversion=conv, drop_off=1 - conv,
                       open_at_previous=int((was & ~reached & open_case).sum()),
                       median_days=float(np.median(gap)) if gap.size else np.nan,
                       p90_days=float(np.quantile(gap, 0.9)) if gap.size else np.nan)
        rows.append(row)
        prev_time = reached_t
    return Funnel(steps=pd.DataFrame(rows))
