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

from insight.context import MICROS_PER_DAY, Context, distinct, win_rate
from insight.partials import GroupValues, InProcess, Runner, days_of, micro_sums, summed
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


def bottlenecks(ctx: Context, pmap: ProcessMap, runner: Runner | None = None) -> Bottlenecks:
    """``runner``: where the stages' partials are computed (``insight.partials``;
    default: this process, the whole log as one partition)."""
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
    stages, stuck, source = _stages(ctx, total_cycle, runner or InProcess(ctx))
    return Bottlenecks(transitions=tr, stages=stages, stuck=stuck, stage_source=source)


@dataclass
class _Stays:
    """A partition's stays: per stay its case (number in the partition), stage (code in
    ``names``), entry time, and whether and when it ended."""

    case: np.ndarray
    state: np.ndarray
    entered: np.ndarray
    micros: np.ndarray  # time in the stage, for finished stays (else 0)
    finished: np.ndarray
    ongoing: np.ndarray  # an open case's last stay
    names: np.ndarray


def _stays(ctx: Context, use_stage: bool) -> _Stays:
    if use_stage:
        raw = ctx.events["stage"]
        state, names = pd.factorize(raw)  # on the column: no Python string per event
        # events without a stage stay in the stage before them
        known = state >= 0
        last = np.maximum.accumulate(np.where(known, np.arange(len(state)), -1))
        in_case = (last >= 0) & (ctx.case[np.maximum(last, 0)] == ctx.case)
        state = np.where(in_case, state[np.maximum(last, 0)], -1)
    else:
        state, names = ctx.act.copy(), ctx.activity_names
    names = np.asarray(names, dtype=object)
    new_stay = np.r_[True, (ctx.case[1:] != ctx.case[:-1]) | (state[1:] != state[:-1])]
    new_stay &= state >= 0
    stay_rows = np.flatnonzero(new_stay)
    stay_case = ctx.case[stay_rows]
    entered = ctx.t[stay_rows]
    nxt_same = np.r_[stay_case[1:] == stay_case[:-1], False]
    left = np.where(nxt_same, np.r_[entered[1:], 0], -1)
    # a case's last stay ends at its last event when the case is completed
    completed = ctx.cases["completed"].to_numpy()[stay_case]
    case_end = ctx.t[ctx.last_rows][stay_case]
    final = ~nxt_same
    finished = nxt_same | (final & completed)
    left = np.where(final & completed, case_end, left)
    return _Stays(case=stay_case, state=state[stay_rows], entered=entered,
                  micros=np.where(finished, left - entered, 0), finished=finished,
                  ongoing=final & ~completed, names=names)


@dataclass
class StayPartial:
    """A partition's stays per stage: ``stages``: stage, stays, cases, micros_high,
    micros_low (the exact sum of its finished stays); ``values``: the finished stays."""

    stages: pd.DataFrame
    values: GroupValues | None


def stay_partial(ctx: Context, use_stage: bool) -> StayPartial:
    s = _stays(ctx, use_stage)
    k = len(s.names)
    stays = np.bincount(s.state, minlength=k)
    cases = np.bincount(distinct(s.case * k + s.state) % k, minlength=k)
    fin = s.finished
    high, low = micro_sums(s.state[fin], s.micros[fin], k)
    present = np.flatnonzero(stays)
    stages = pd.DataFrame({"stage": s.names[present], "stays": stays[present],
                           "cases": cases[present], "micros_high": high[present],
                           "micros_low": low[present]})
    row_of = np.full(k, -1, dtype=np.int64)
    row_of[present] = np.arange(present.size)
    return StayPartial(stages=stages, values=GroupValues(
        keys=stages[["stage"]], group=row_of[s.state[fin]], micros=s.micros[fin],
        bucket_by=("stage",)))


def stay_stats(values: GroupValues) -> dict[str, pd.DataFrame]:
    return {"stages": values.stats(["stage"])}


@dataclass
class StallPartial:
    """A partition's stays against each stage's P90: ``stages``: stage, stalls,
    stalled_cases, and the won and lost cases among the cases stalled in it and among
    those that were in it without a stall, stuck_now; ``stuck``: its stuck cases
    (number in the whole log's ``Context``, stage, entered, age_days)."""

    stages: pd.DataFrame
    stuck: pd.DataFrame
    values: None = None


def stall_partial(ctx: Context, number: np.ndarray, use_stage: bool,
                  p90: dict[str, float], as_of: int) -> StallPartial:
    """``p90``: each stage's P90 (days) over the whole log; ``as_of``: "now" (us)."""
    s = _stays(ctx, use_stage)
    k = len(s.names)
    limit = np.array([p90.get(name, np.nan) for name in s.names], dtype=np.float64)[s.state]
    days = s.micros / MICROS_PER_DAY
    stalled = s.finished & (days > limit)
    age = (as_of - s.entered) / MICROS_PER_DAY
    stuck = s.ongoing & (age > limit)
    stalled_pairs = distinct(s.case[stalled] * k + s.state[stalled])
    calm_pairs = distinct(s.case * k + s.state)
    calm_pairs = calm_pairs[~np.isin(calm_pairs, stalled_pairs, assume_unique=True)]
    won, lost = ctx.won, ctx.lost
    counts = {"stalls": np.bincount(s.state[stalled], minlength=k),
              "stalled_cases": np.bincount(stalled_pairs % k, minlength=k)}
    for name, pairs in (("stalled", stalled_pairs), ("not_stalled", calm_pairs)):
        counts[f"won_{name}"] = np.bincount(pairs % k, weights=won[pairs // k],
                                            minlength=k).astype(np.int64)
        counts[f"lost_{name}"] = np.bincount(pairs % k, weights=lost[pairs // k],
                                             minlength=k).astype(np.int64)
    counts["stuck_now"] = np.bincount(s.state[stuck], minlength=k)
    present = np.flatnonzero(np.bincount(s.state, minlength=k))
    stages = pd.DataFrame({"stage": s.names[present],
                           **{name: c[present] for name, c in counts.items()}})
    idx = np.flatnonzero(stuck)
    return StallPartial(stages=stages, stuck=pd.DataFrame({
        "number": number[s.case[idx]], "stage": s.names[s.state[idx]],
        "entered": s.entered[idx], "age_days": age[idx]}))


def _stages(ctx: Context, total_cycle: float, runner: Runner
            ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    use_stage = ctx.has_column("stage")
    source = "stage column" if use_stage else "last activity"
    firsts, stats = runner.run(stay_partial, stay_stats, use_stage=use_stage)
    sums = summed([p.stages for p in firsts], ["stage"])
    if len(sums) == 0:
        return pd.DataFrame(), pd.DataFrame(), source
    sums = sums.merge(stats["stages"].drop(columns="count"), on="stage", how="left")
    p90 = dict(zip(sums["stage"].tolist(), sums["p90_days"].tolist(), strict=True))
    seconds, _ = runner.run(stall_partial, None, {"number": np.arange(ctx.n_cases)},
                            use_stage=use_stage, p90=p90, as_of=_micros(ctx.as_of))
    stalls = summed([p.stages for p in seconds], ["stage"]).set_index("stage").reindex(
        sums["stage"].to_numpy())
    total = days_of(sums["micros_high"], sums["micros_low"])
    stalled = {c: stalls[c].to_numpy() for c in stalls.columns}
    stages = pd.DataFrame({
        "stage": sums["stage"].to_numpy(),
        "stays": sums["stays"].to_numpy(),
        "cases": sums["cases"].to_numpy(),
        "median_days": sums["median_days"].to_numpy(dtype=np.float64),
        "p90_days": sums["p90_days"].to_numpy(dtype=np.float64),
        "total_days": total,
        "share_of_cycle": total / total_cycle,
        "stalls": stalled["stalls"],
        "stalled_cases": stalled["stalled_cases"],
        "win_rate_stalled": [win_rate(w, lo) for w, lo in zip(
            stalled["won_stalled"], stalled["lost_stalled"], strict=True)],
        "win_rate_not_stalled": [win_rate(w, lo) for w, lo in zip(
            stalled["won_not_stalled"], stalled["lost_not_stalled"], strict=True)],
        "stuck_now": stalled["stuck_now"],
    }).sort_values(["total_days", "stage"], ascending=[False, True], kind="stable"
                   ).reset_index(drop=True)
    stages.insert(0, "rank", np.arange(1, len(stages) + 1))

    found = pd.concat([p.stuck for p in seconds], ignore_index=True)
    found = found.sort_values("number", kind="stable")  # the whole log's case order
    number = found["number"].to_numpy(dtype=np.int64)
    cases = ctx.cases.iloc[number]
    stuck = pd.DataFrame({
        "case_id": cases["case_id"].to_numpy(),
        "stage": found["stage"].to_numpy(dtype=object),
        "entered": pd.to_datetime(found["entered"].to_numpy(dtype=np.int64), unit="us",
                                  utc=True),
        "age_days": found["age_days"].to_numpy(dtype=np.float64),
        "p90_days": np.array([p90[name] for name in found["stage"]], dtype=np.float64),
    })
    stuck["over_p90"] = stuck["age_days"] / stuck["p90_days"]
    for col in ("rep", "region", "value", "currency"):
        if col in cases.columns:
            stuck[col] = cases[col].to_numpy()
    stuck = stuck.sort_values("over_p90", ascending=False, kind="stable").reset_index(drop=True)
    return stages, stuck, source


def _micros(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1000)  # .value is in nanoseconds whatever the unit
