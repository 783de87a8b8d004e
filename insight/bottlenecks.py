"""Bottlenecks: where cases wait, ranked by the waiting time they add to the whole process.

A slow step few cases take matters less than a moderately slow one every case takes,
so transitions and stages are ranked by total waiting time (volume x time) and its
share of all cycle time, not by their median alone.

A *stage* is the sales stage column when the log has one, otherwise the last activity
(the case waits "after X" until its next event). A case stays in a stage from its first
event there to the first event of the next stage; a stall is a stay longer than the
stage's P90 of finished stays; an open case is stuck when its current stay is already
longer than that P90 at the log's extraction time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import MICROS_PER_DAY, Context, distinct, grouped_stats, win_rate
from insight.process_map import ProcessMap
from insight.sections import Section


@dataclass
class Bottlenecks(Section):
    """``transitions``: source, target, cases, events, median_days, p90_days, total_days,
    share_of_cycle, rank (1 = most waiting added).
    ``stages``: stage, stays, cases, median_days, p90_days, total_days, share_of_cycle,
    stalls (finished stays over the P90), stalled_cases, win_rate_stalled,
    win_rate_not_stalled, stuck_now (open cases past the P90 now), rank.
    ``stuck``: the open cases stuck now: case_id, stage, entered, age_days, p90_days,
    over_p90 (age / P90) and the case's rep, region, value and currency where known.
    ``stage_source``: "stage column" or "last activity"."""

    transitions: pd.DataFrame = field(default_factory=pd.DataFrame)
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    stuck: pd.DataFrame = field(default_factory=pd.DataFrame)
    stage_source: str = ""


def bottlenecks(ctx: Context, pmap: ProcessMap) -> Bottlenecks:
    total_cycle = float(ctx.cases["cycle_days"].sum())
    if len(pmap.edges) == 0 or total_cycle <= 0:
        return Bottlenecks.unavailable("no case has two events at different times: "
                                       "nothing waits")
    tr = pmap.edges[["source", "target", "cases", "events", "median_days", "p90_days",
                     "total_days"]].copy()
    tr["share_of_cycle"] = tr["total_days"] / total_cycle
    tr = tr.sort_values(["total_days", "source", "target"], ascending=[False, True, True],
                        kind="stable").reset_index(drop=True)
    tr.insert(0, "rank", np.arange(1, len(tr) + 1))
    stages, stuck, source = _stages(ctx, total_cycle)
    return Bottlenecks(transitions=tr, stages=stages, stuck=stuck, stage_source=source)


def _stages(ctx: Context, total_cycle: float) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    if ctx.has_column("stage"):
        raw = ctx.events["stage"]
        state, names = pd.factorize(raw)  # on the column: no Python string per event
        # events without a stage stay in the stage before them
        known = state >= 0
        last = np.maximum.accumulate(np.where(known, np.arange(len(state)), -1))
        in_case = (last >= 0) & (ctx.case[np.maximum(last, 0)] == ctx.case)
        state = np.where(in_case, state[np.maximum(last, 0)], -1)
        source = "stage column"
    else:
        state, names = ctx.act.copy(), ctx.activity_names
        source = "last activity"
    names = np.asarray(names, dtype=object)
    new_stay = np.r_[True, (ctx.case[1:] != ctx.case[:-1]) | (state[1:] != state[:-1])]
    new_stay &= state >= 0
    stay_rows = np.flatnonzero(new_stay)
    if stay_rows.size == 0:
        return pd.DataFrame(), pd.DataFrame(), source
    stay_case = ctx.case[stay_rows]
    stay_state = state[stay_rows]
    entered = ctx.t[stay_rows]
    nxt_same = np.r_[stay_case[1:] == stay_case[:-1], False]
    left = np.where(nxt_same, np.r_[entered[1:], 0], -1)
    # a case's last stay ends at its last event when the case is completed
    completed = ctx.cases["completed"].to_numpy()[stay_case]
    case_end = ctx.t[ctx.last_rows][stay_case]
    final = ~nxt_same
    finished = nxt_same | (final & completed)
    left = np.where(final & completed, case_end, left)
    days = np.where(finished, (left - entered) / MICROS_PER_DAY, np.nan)
    k = len(names)
    st = grouped_stats(stay_state, days, k)
    p90 = st["p90"]
    stalled = finished & (days > p90[stay_state])
    stay_cases = np.bincount(distinct(stay_case * k + stay_state) % k, minlength=k)
    stalled_pairs = distinct(stay_case[stalled] * k + stay_state[stalled])
    won, lost = ctx.won, ctx.lost
    rows = []
    ongoing = final & ~completed
    age = (_micros(ctx.as_of) - entered) / MICROS_PER_DAY
    stuck_mask = ongoing & (age > p90[stay_state])
    for s in np.flatnonzero(stay_cases):  # a loop over the handful of stages
        stalled_cases = np.zeros(ctx.n_cases, dtype=bool)
        stalled_cases[stalled_pairs[stalled_pairs % k == s] // k] = True
        had = np.zeros(ctx.n_cases, dtype=bool)
        had[stay_case[stay_state == s]] = True
        rows.append({
            "stage": names[s], "stays": int((stay_state == s).sum()),
            "cases": int(stay_cases[s]), "median_days": st["median"][s],
            "p90_days": p90[s], "total_days": st["sum"][s],
            "share_of_cycle": st["sum"][s] / total_cycle,
            "stalls": int((stalled & (stay_state == s)).sum()),
            "stalled_cases": int(stalled_cases.sum()),
            "win_rate_stalled": win_rate(won & stalled_cases, lost & stalled_cases),
            "win_rate_not_stalled": win_rate(won & had & ~stalled_cases,
                                             lost & had & ~stalled_cases),
            "stuck_now": int((stuck_mask & (stay_state == s)).sum()),
        })
    stages = pd.DataFrame(rows).sort_values(["total_days", "stage"], ascending=[False, True],
                                            kind="stable").reset_index(drop=True)
    stages.insert(0, "rank", np.arange(1, len(stages) + 1))
    idx = np.flatnonzero(stuck_mask)
    cases = ctx.cases.iloc[stay_case[idx]]
    stuck = pd.DataFrame({
        "case_id": cases["case_id"].to_numpy(),
        "stage": names[stay_state[idx]],
        "entered": pd.to_datetime(entered[idx], unit="us", utc=True),
        "age_days": age[idx],
        "p90_days": p90[stay_state[idx]],
    })
    stuck["over_p90"] = stuck["age_days"] / stuck["p90_days"]
    for col in ("rep", "region", "value", "currency"):
        if col in cases.columns:
            stuck[col] = cases[col].to_numpy()
    stuck = stuck.sort_values("over_p90", ascending=False, kind="stable").reset_index(drop=True)
    return stages, stuck, source


def _micros(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1000)  # .value is in nanoseconds whatever the unit
