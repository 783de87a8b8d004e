"""Rework: steps done again (re-quotes, re-sent invoices) and stages that move backwards.

Not every repetition is rework: meetings and payment reminders recur by design. By
default only activities of the mapping's expected order count (a happy-path step done
twice is rework by definition); without an expected order, every activity does. Stage
regressions need the mapping's ``stage_order``.

Extra days compare the median cycle time of completed cases with and without the
rework (an association, not a causal effect: hard deals both re-quote and take long).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import Context, distinct_counts, win_rate
from insight.sections import Section


@dataclass
class Rework(Section):
    """``activities``: activity, cases_with (cases having it), cases_repeated,
    share_repeated (of cases_with), extra_events (occurrences beyond the first),
    median_cycle_with / median_cycle_without (days, completed cases having the activity),
    extra_days, win_rate_with, win_rate_without; rework activities first, by
    cases_repeated. ``summary``: kind ("repeated activity", "stage regression", "any
    rework"), cases, share, median_cycle_with, median_cycle_without, extra_days,
    win_rate_with, win_rate_without. ``regressions``: from_stage, to_stage, events,
    cases. ``case_rework``: per case (by number) whether it has any rework.
    ``counted``: the activities whose repetition counts as rework."""

    activities: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    regressions: pd.DataFrame = field(default_factory=pd.DataFrame)
    case_rework: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    counted: list[str] = field(default_factory=list)
    regression_note: str | None = None


def rework(ctx: Context, rework_activities: list[str] | None = None) -> Rework:
    k = ctx.n_activities
    names = ctx.activity_names
    if rework_activities is None:
        expected = ctx.roles.expected_order
        rework_activities = list(expected) if expected else list(names)
    counted = ctx.codes_of(rework_activities)
    pair, counts = distinct_counts(ctx.case * k + ctx.act)
    pair_case, pair_act = pair // k, pair % k
    cases_with = np.bincount(pair_act, minlength=k)
    rep = counts > 1
    cases_rep = np.bincount(pair_act[rep], minlength=k)
    extra = np.bincount(pair_act, weights=counts - 1, minlength=k).astype(np.int64)
    cycle = ctx.cases["cycle_days"].to_numpy()
    completed = ctx.cases["completed"].to_numpy()
    won, lost = ctx.won, ctx.lost
    rows = []
    for a in np.flatnonzero(cases_rep):  # activities that repeat somewhere: a handful
        has = np.zeros(ctx.n_cases, dtype=bool)
        has[pair_case[pair_act == a]] = True
        again = np.zeros(ctx.n_cases, dtype=bool)
        again[pair_case[(pair_act == a) & rep]] = True
        rows.append({"activity": names[a], "counted": bool(np.isin(a, counted)),
                     "cases_with": int(cases_with[a]), "cases_repeated": int(cases_rep[a]),
                     "share_repeated": cases_rep[a] / cases_with[a],
                     "extra_events": int(extra[a]),
                     **_compare(again, has & ~again, cycle, completed, won, lost)})
    activities = pd.DataFrame(rows, columns=[
        "activity", "counted", "cases_with", "cases_repeated", "share_repeated",
        "extra_events", "median_cycle_with", "median_cycle_without", "extra_days",
        "win_rate_with", "win_rate_without"])
    activities = activities.sort_values(["counted", "cases_repeated", "activity"],
                                        ascending=[False, False, True], kind="stable"
                                        ).reset_index(drop=True)
    repeated_case = np.zeros(ctx.n_cases, dtype=bool)
    repeated_case[pair_case[rep & np.isin(pair_act, counted)]] = True
    summary = [{"kind": "repeated activity", "cases": int(repeated_case.sum()),
                "share": repeated_case.mean(),
                **_compare(repeated_case, ~repeated_case, cycle, completed, won, lost)}]
    regressions, regressed_case, note = _regressions(ctx)
    any_rework = repeated_case.copy()
    if regressed_case is not None:
        summary.append({"kind": "stage regression", "cases": int(regressed_case.sum()),
                        "share": regressed_case.mean(),
                        **_compare(regressed_case, ~regressed_case, cycle, completed, won,
                                   lost)})
        any_rework |= regressed_case
    summary.append({"kind": "any rework", "cases": int(any_rework.sum()),
                    "share": any_rework.mean(),
                    **_compare(any_rework, ~any_rework, cycle, completed, won, lost)})
    return Rework(activities=activities, summary=pd.DataFrame(summary),
                  regressions=regressions, case_rework=any_rework,
                  counted=[str(names[c]) for c in counted], regression_note=note)


def _compare(with_: np.ndarray, without: np.ndarray, cycle: np.ndarray, completed: np.ndarray,
             won: np.ndarray, lost: np.ndarray) -> dict[str, float]:
    a = cycle[with_ & completed]
    b = cycle[without & completed]
    ma = float(np.median(a)) if a.size else np.nan
    mb = float(np.median(b)) if b.size else np.nan
    return {"median_cycle_with": ma, "median_cycle_without": mb, "extra_days": ma - mb,
            "win_rate_with": win_rate(won & with_, lost & with_),
            "win_rate_without": win_rate(won & without, lost & without)}


def _regressions(ctx: Context) -> tuple[pd.DataFrame, np.ndarray | None, str | None]:
    """Events whose stage ranks below the furthest stage the case had reached."""
    order = ctx.roles.stage_order
    if not order:
        return pd.DataFrame(), None, "no stage_order in the mapping: stage regressions unknown"
    if not ctx.has_column("stage"):
        return pd.DataFrame(), None, "no stage column mapped: stage regressions unknown"
    rank_of = {s: i for i, s in enumerate(order)}
    stage = ctx.events["stage"]
    codes, names = pd.factorize(stage)  # rank the few stage names, not every event
    name_rank = np.array([rank_of.get(s, np.nan) for s in names] + [np.nan])
    rank = name_rank[codes]  # code -1 (missing) picks the NaN at the end
    # running furthest rank within the case: offset each case so a global running max
    # never carries one case's stages into the next
    offset = ctx.case * (len(order) + 1.0)
    ranked = np.where(np.isnan(rank), -1.0, rank) + offset
    running = np.maximum.accumulate(ranked)
    before = np.r_[-np.inf, running[:-1]]
    first = np.r_[True, ctx.case[1:] != ctx.case[:-1]]
    furthest = before - offset
    back = ~np.isnan(rank) & ~first & (rank < furthest)
    regressed = np.zeros(ctx.n_cases, dtype=bool)
    regressed[ctx.case[back]] = True
    rows = np.flatnonzero(back)
    table = pd.DataFrame({"from_stage": np.asarray(order, dtype=object)[
                              furthest[rows].astype(np.int64)],
                          "to_stage": stage.take(rows).to_numpy(), "case": ctx.case[rows]})
    table = (table.groupby(["from_stage", "to_stage"], sort=False)
             .agg(events=("case", "size"), cases=("case", "nunique"))
             .reset_index().sort_values("events", ascending=False, kind="stable")
             .reset_index(drop=True))
    return table, regressed, None
