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
from insight.partials import InProcess, Runner
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


def rework(ctx: Context, rework_activities: list[str] | None = None,
           runner: Runner | None = None) -> Rework:
    """``runner``: where the partials are computed (``insight.partials``; default: this
    process, the whole log as one partition)."""
    k = ctx.n_activities
    names = ctx.activity_names
    if rework_activities is None:
        expected = ctx.roles.expected_order
        rework_activities = list(expected) if expected else list(names)
    counted = ctx.codes_of(rework_activities)
    regression_why = _regressions_unknown(ctx)
    partials, _ = (runner or InProcess(ctx)).run(
        rework_partial, None, {"number": np.arange(ctx.n_cases)},
        regressions=regression_why is None)
    # per case and activity (the whole log's codes): 0 absent, 1 once, 2 repeated
    state = np.zeros((ctx.n_cases, k), dtype=np.int8)
    extra = np.zeros(k, dtype=np.int64)
    code_of = pd.Index(names)
    for p in partials:  # a loop over partitions
        codes = code_of.get_indexer(p.names)
        state[np.ix_(p.number, codes)] = p.state
        extra[codes] += p.extra
    cases_with = (state > 0).sum(axis=0)
    cases_rep = (state == 2).sum(axis=0)
    cycle = ctx.cases["cycle_days"].to_numpy()
    completed = ctx.cases["completed"].to_numpy()
    won, lost = ctx.won, ctx.lost
    rows = []
    for a in np.flatnonzero(cases_rep):  # activities that repeat somewhere: a handful
        again = state[:, a] == 2
        has = state[:, a] > 0
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
    repeated_case = (state[:, counted] == 2).any(axis=1)
    summary = [{"kind": "repeated activity", "cases": int(repeated_case.sum()),
                "share": repeated_case.mean(),
                **_compare(repeated_case, ~repeated_case, cycle, completed, won, lost)}]
    any_rework = repeated_case.copy()
    if regression_why is None:
        regressions, regressed_case = _regressions_of(partials, ctx.n_cases)
        summary.append({"kind": "stage regression", "cases": int(regressed_case.sum()),
                        "share": regressed_case.mean(),
                        **_compare(regressed_case, ~regressed_case, cycle, completed, won,
                                   lost)})
        any_rework |= regressed_case
    else:
        regressions = pd.DataFrame()
    summary.append({"kind": "any rework", "cases": int(any_rework.sum()),
                    "share": any_rework.mean(),
                    **_compare(any_rework, ~any_rework, cycle, completed, won, lost)})
    return Rework(activities=activities, summary=pd.DataFrame(summary),
                  regressions=regressions, case_rework=any_rework,
                  counted=[str(names[c]) for c in counted], regression_note=regression_why)


@dataclass
class ReworkPartial:
    """A partition's repetitions: ``state`` (its cases × ``names``: 0 absent, 1 once, 2
    repeated) for its cases ``number`` (in the whole log's ``Context``), ``extra`` (per
    activity, occurrences beyond a case's first); with stage regressions: per case
    ``regressed``, and ``regressions`` (from_stage, to_stage, events, cases, and where
    the pair first occurs: case number and row within the case)."""

    names: np.ndarray
    number: np.ndarray
    state: np.ndarray
    extra: np.ndarray
    regressed: np.ndarray | None = None
    regressions: pd.DataFrame | None = None
    values: None = None


def rework_partial(ctx: Context, number: np.ndarray, regressions: bool) -> ReworkPartial:
    k = ctx.n_activities
    pair, counts = distinct_counts(ctx.case * k + ctx.act)
    pair_case, pair_act = pair // k, pair % k
    state = np.zeros((ctx.n_cases, k), dtype=np.int8)
    state[pair_case, pair_act] = np.where(counts > 1, 2, 1)
    extra = np.bincount(pair_act, weights=counts - 1, minlength=k).astype(np.int64)
    out = ReworkPartial(names=ctx.activity_names, number=number, state=state, extra=extra)
    if regressions:
        out.regressed, out.regressions = _regression_partial(ctx, number)
    return out


def _regressions_unknown(ctx: Context) -> str | None:
    """Why stage regressions cannot be told on this log (None: they can)."""
    if not ctx.roles.stage_order:
        return "no stage_order in the mapping: stage regressions unknown"
    if not ctx.has_column("stage"):
        return "no stage column mapped: stage regressions unknown"
    return None


def _regression_partial(ctx: Context, number: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """Events whose stage ranks below the furthest stage the case had reached."""
    order = ctx.roles.stage_order
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
                          "to_stage": stage.take(rows).to_numpy(), "case": ctx.case[rows],
                          "number": number[ctx.case[rows]], "row": ctx.position[rows]})
    # each pair's first event in the whole log's order (case number, row in the case)
    table = table.sort_values(["number", "row"], kind="stable")
    table = (table.groupby(["from_stage", "to_stage"], sort=False)
             .agg(events=("case", "size"), cases=("case", "nunique"),
                  number=("number", "first"), row=("row", "first"))
             .reset_index())
    return regressed, table


def _regressions_of(partials: list[ReworkPartial], n_cases: int
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """The regressions table (pairs in order of first occurrence in the whole log, then
    by events) and the regressed cases, from the partitions' partials."""
    regressed = np.zeros(n_cases, dtype=bool)
    for p in partials:
        regressed[p.number[p.regressed]] = True
    rows = pd.concat([p.regressions for p in partials], ignore_index=True)
    rows = rows.sort_values(["number", "row"], kind="stable")
    table = (rows.groupby(["from_stage", "to_stage"], sort=False)
             .agg(events=("events", "sum"), cases=("cases", "sum")).reset_index()
             .sort_values("events", ascending=False, kind="stable").reset_index(drop=True))
    return table, regressed


def _compare(with_: np.ndarray, without: np.ndarray, cycle: np.ndarray, completed: np.ndarray,
             won: np.ndarray, lost: np.ndarray) -> dict[str, float]:
    a = cycle[with_ & completed]
    b = cycle[without & completed]
    ma = float(np.median(a)) if a.size else np.nan
    mb = float(np.median(b)) if b.size else np.nan
    return {"median_cycle_with": ma, "median_cycle_without": mb, "extra_days": ma - mb,
            "win_rate_with": win_rate(won & with_, lost & with_),
            "win_rate_without": win_rate(won & without, lost & without)}
