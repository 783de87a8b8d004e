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
from insight.partials import InProcess, Runner
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


def default_milestones(ctx: Context, runner: Runner | None = None) -> Milestones:
    """The Lead-to-Cash milestones the log has, in the order its cases reach them
    (``runner``: where each case's first times are read; see ``milestone_times``)."""
    return _default(ctx, runner)[0]


def _default(ctx: Context, runner: Runner | None) -> tuple[Milestones, np.ndarray | None]:
    """The default milestones and, when they were read to order them, their times."""
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
        return [(a, [a]) for a in roles.expected_order if a in present], None
    first = milestone_times(ctx, chosen, runner)
    order = _in_case_order(first)
    return [chosen[i] for i in order], first[order]


def _in_case_order(first: np.ndarray) -> list[int]:
    """Steps (rows of ``first``: per case its first time, -1: never) in the order cases
    reach them: a step goes before another when most cases that reach both reach it
    first (traffic fines are notified before they are paid, although fines paid on the
    spot reach payment sooner on average)."""
    m = len(first)
    wins = np.zeros(m)
    for i in range(m):  # a handful of steps: pairs, each vectorised over cases
        for j in range(m):
            both = (first[i] >= 0) & (first[j] >= 0)
            if i != j and both.any() and (first[i][both] < first[j][both]).mean() > 0.5:
                wins[i] += 1
    return sorted(range(m), key=lambda i: (-wins[i], i))


@dataclass
class MilestonePartial:
    """A partition's cases ``number`` (in the whole log's ``Context``) and ``first``:
    per milestone (row) and case (column) its first time there, us (-1: never)."""

    number: np.ndarray
    first: np.ndarray
    values: None = None


def milestone_partial(ctx: Context, number: np.ndarray, steps: list[list[str]]
                      ) -> MilestonePartial:
    """``steps``: each milestone's activities by name (a partition codes its own)."""
    return MilestonePartial(number=number, first=np.stack(
        [ctx.case_first_time(np.isin(ctx.act, ctx.codes_of(acts))) for acts in steps]))


def milestone_times(ctx: Context, steps: Milestones, runner: Runner | None = None
                    ) -> np.ndarray:
    """Per milestone (row) and case of ``ctx`` (column) the case's first time at one of
    the milestone's activities, us (-1: never), read on each partition of cases
    (``runner``, ``insight.partials``; default: this process, the whole log as one)."""
    partials, _ = (runner or InProcess(ctx)).run(
        milestone_partial, None, {"number": np.arange(ctx.n_cases)},
        steps=[list(acts) for _, acts in steps])
    first = np.full((len(steps), ctx.n_cases), -1, dtype=np.int64)
    for part in partials:  # a loop over partitions
        first[:, part.number] = part.first
    return first


def funnel(ctx: Context, milestones: Milestones | None = None, runner: Runner | None = None
           ) -> Funnel:
    """``runner``: where each case's first time at each milestone is read
    (``insight.partials``; default: this process, the whole log as one partition)."""
    if milestones is None:
        steps, first = _default(ctx, runner)
    else:
        steps, first = milestones, None
    present = set(ctx.activity_names)
    kept = [(label, [a for a in acts if a in present]) for label, acts in steps]
    missing = [label for label, acts in kept if not acts]
    steps = [(label, acts) for label, acts in kept if acts]
    if len(steps) < 2:
        why = ("no milestones: the log has fewer than two of lead, opportunity, qualified, "
               "quote, won, invoiced, paid (map the won/invoice/payment roles or the "
               "expected_order, or pass milestones)")
        if missing:
            why += f"; absent from the log: {', '.join(missing)}"
        return Funnel.unavailable(why)
    if first is None:
        first = milestone_times(ctx, steps, runner)
    open_case = ~ctx.cases["completed"].to_numpy()
    rows = []
    prev_time = None
    first_cases = None
    for i, (label, acts) in enumerate(steps):
        reached_t = first[i]
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
