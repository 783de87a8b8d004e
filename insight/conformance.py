"""Conformance: each case against the expected order (or a happy path the user writes).

A simple, explainable check rather than an alignment: with the expected steps numbered
0..m-1 and R the furthest step a case reached,

- skipped: expected steps before R the case never did (a lost or open case has not
  skipped the steps after where it stopped);
- out of order: an expected event whose step comes before one the case already did;
- repeated: an expected step done more than once;
- unexpected: events of activities outside the expected order (reported; they count
  against conformance only with ``strict=True``, since meetings and reminders are
  normal in most logs).

Fitness = expected events in order, first time / (expected events + skipped steps
[+ unexpected events when strict]): 1 for a case that follows the path as far as it went.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import MONTH, Context, distinct
from insight.partials import InProcess, Runner, summed
from insight.sections import Section

#: segment attributes of the deviation-rate tables, when the log has them
RATE_SEGMENTS = ("rep", "region", "team", MONTH)


@dataclass
class Conformance(Section):
    """``cases``: case_id, events, skipped, out_of_order, repeated, unexpected, fitness,
    conforming, furthest_step (the furthest expected step the case reached).
    ``steps``: activity, position, cases_done, skipped_cases, out_of_order_cases,
    repeated_cases. ``unexpected``: activity, events, cases.
    ``by_segment``: attribute, segment, cases, deviation_rate, skip_rate,
    out_of_order_rate, repeat_rate, mean_fitness (by rep, region, team, month).
    ``path``: the expected steps used; ``source``: "mapping expected_order" or "happy path"."""

    cases: pd.DataFrame = field(default_factory=pd.DataFrame)
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    unexpected: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_segment: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: list[str] = field(default_factory=list)
    source: str = ""
    strict: bool = False

    @property
    def deviation_rate(self) -> float:
        return float(1.0 - self.cases["conforming"].mean()) if len(self.cases) else np.nan


def conformance(ctx: Context, happy_path: list[str] | None = None, strict: bool = False,
                runner: Runner | None = None) -> Conformance:
    """``runner``: where the partials are computed (``insight.partials``; default: this
    process, the whole log as one partition)."""
    path = list(happy_path) if happy_path else list(ctx.roles.expected_order)
    source = "happy path" if happy_path else "mapping expected_order"
    if not path:
        return Conformance.unavailable("no expected order: the mapping has no "
                                       "roles.expected_order and no happy path was given")
    if len(set(path)) != len(path):
        raise ValueError(f"the expected path names a step twice: {path}")
    m = len(path)
    n = ctx.n_cases
    partials, _ = (runner or InProcess(ctx)).run(
        conformance_partial, None, {"number": np.arange(n)}, path=path, strict=strict)
    per_case = {name: np.zeros(n, dtype=dtype) for name, dtype in _PER_CASE.items()}
    step_counts = {name: np.zeros(m, dtype=np.int64) for name in _PER_STEP}
    for p in partials:  # a loop over partitions
        for name in _PER_CASE:
            per_case[name][p.number] = p.cases[name]
        for name in _PER_STEP:
            step_counts[name] += p.steps[name]
    furthest = per_case["furthest"]
    conforming = per_case["conforming"]
    cases = pd.DataFrame({
        "case_id": ctx.cases["case_id"].to_numpy(), "events": ctx.case_lengths,
        "skipped": per_case["skipped"], "out_of_order": per_case["out_of_order"],
        "repeated": per_case["repeated"], "unexpected": per_case["unexpected"],
        "fitness": per_case["fitness"], "conforming": conforming,
        "furthest_step": np.where(furthest >= 0, np.asarray(path, dtype=object)[
            np.maximum(furthest, 0)], None),
    })
    steps = pd.DataFrame({"activity": path, "position": np.arange(1, m + 1),
                          "cases_done": step_counts["cases_done"],
                          "skipped_cases": step_counts["skipped_cases"],
                          "out_of_order_cases": step_counts["out_of_order_cases"],
                          "repeated_cases": step_counts["repeated_cases"]})
    # activities in the whole log's code order, then by events (ties keep that order)
    un = summed([p.unexpected for p in partials], ["activity"])
    un = un.iloc[np.argsort(pd.Index(ctx.activity_names).get_indexer(un["activity"]),
                            kind="stable")]
    unexpected_table = pd.DataFrame({"activity": un["activity"].to_numpy(dtype=object),
                                     "events": un["events"].to_numpy(dtype=np.int64),
                                     "cases": un["cases"].to_numpy(dtype=np.int64)}
                                    ).sort_values("events", ascending=False, kind="stable"
                                                  ).reset_index(drop=True)
    skipped = per_case["skipped"]
    cnt = {"out_of_order": per_case["out_of_order"], "repeated": per_case["repeated"]}
    frame = cases.assign(deviating=~conforming, any_skip=skipped > 0,
                         any_ooo=cnt["out_of_order"] > 0, any_repeat=cnt["repeated"] > 0)
    parts = []
    for attribute in RATE_SEGMENTS:
        if attribute != MONTH and attribute not in ctx.cases.columns:
            continue
        seg, names = ctx.segment_codes(attribute)
        g = frame.groupby(seg, sort=True)
        part = pd.DataFrame({
            "cases": g.size(), "deviation_rate": g["deviating"].mean(),
            "skip_rate": g["any_skip"].mean(), "out_of_order_rate": g["any_ooo"].mean(),
            "repeat_rate": g["any_repeat"].mean(), "mean_fitness": g["fitness"].mean()})
        part.index = names.take(part.index.to_numpy())
        part.index.name = "segment"
        parts.append(part.reset_index().assign(attribute=attribute))
    by_segment = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())
    if len(by_segment):
        by_segment = by_segment[["attribute", "segment", "cases", "deviation_rate",
                                 "skip_rate", "out_of_order_rate", "repeat_rate",
                                 "mean_fitness"]]
    return Conformance(cases=cases, steps=steps, unexpected=unexpected_table,
                       by_segment=by_segment, path=path, source=source, strict=strict)


#: per case figures of a partial, and their types
_PER_CASE = {"skipped": np.int64, "out_of_order": np.int64, "repeated": np.int64,
             "unexpected": np.int64, "fitness": np.float64, "conforming": bool,
             "furthest": np.int64}
#: per expected step counts of cases of a partial
_PER_STEP = ("cases_done", "skipped_cases", "out_of_order_cases", "repeated_cases")


@dataclass
class ConformancePartial:
    """A partition's cases against the expected path: ``cases`` (per case, in the
    order of ``number``, the case numbers in the whole log's ``Context``: the
    ``_PER_CASE`` figures; ``furthest``: the furthest step reached, -1 none),
    ``steps`` (per step the ``_PER_STEP`` counts) and ``unexpected`` (activity, events,
    cases)."""

    number: np.ndarray
    cases: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    unexpected: pd.DataFrame
    values: None = None


def conformance_partial(ctx: Context, number: np.ndarray, path: list[str], strict: bool
                        ) -> ConformancePartial:
    m = len(path)
    pos_of = {a: i for i, a in enumerate(path)}
    act_pos = np.array([pos_of.get(a, -1) for a in ctx.activity_names], dtype=np.int64)
    pos = act_pos[ctx.act]
    expected = pos >= 0
    n = ctx.n_cases
    case = ctx.case

    # out of order: step below the furthest step reached before, within the case
    offset = case * (m + 1)
    running = np.maximum.accumulate(np.where(expected, pos, -1) + offset)
    before = np.r_[-1, running[:-1]] - offset
    first = np.r_[True, case[1:] != case[:-1]]
    before = np.where(first, -1, before)
    out_of_order = expected & (pos < before)

    # repeated: an expected step seen before in the case
    ex_rows = np.flatnonzero(expected)
    first_row = np.full((n, m), len(pos), dtype=np.int64)
    np.minimum.at(first_row, (case[ex_rows], pos[ex_rows]), ex_rows)
    first_time = np.zeros(len(pos), dtype=bool)
    first_time[first_row[first_row < len(pos)]] = True
    repeated = expected & ~first_time

    done = np.zeros((n, m), dtype=bool)
    done[case[expected], pos[expected]] = True
    furthest = np.where(done.any(axis=1), m - 1 - np.argmax(done[:, ::-1], axis=1), -1)
    skipped_matrix = ~done & (np.arange(m)[None, :] < furthest[:, None])
    skipped = skipped_matrix.sum(axis=1)

    unexpected = ~expected
    cnt = {name: np.bincount(case, weights=flag, minlength=n).astype(np.int64)
           for name, flag in (("out_of_order", out_of_order), ("repeated", repeated),
                              ("unexpected", unexpected), ("expected", expected),
                              ("in_order_first", expected & first_time & ~out_of_order))}
    denominator = cnt["expected"] + skipped + (cnt["unexpected"] if strict else 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fitness = np.where(denominator > 0, cnt["in_order_first"] / np.maximum(denominator, 1),
                           0.0)
    conforming = (skipped == 0) & (cnt["out_of_order"] == 0) & (cnt["repeated"] == 0)
    if strict:
        conforming &= cnt["unexpected"] == 0
    conforming &= cnt["expected"] > 0

    ooo_cases = np.zeros((n, m), dtype=bool)
    ooo_cases[case[out_of_order], pos[out_of_order]] = True
    rep_cases = np.zeros((n, m), dtype=bool)
    rep_cases[case[repeated], pos[repeated]] = True
    k = ctx.n_activities
    un_ev = np.bincount(ctx.act[unexpected], minlength=k)
    un_cases = np.bincount(distinct(case[unexpected] * k + ctx.act[unexpected]) % k,
                           minlength=k)
    seen = np.flatnonzero(un_ev)
    return ConformancePartial(
        number=number,
        cases={"skipped": skipped, "out_of_order": cnt["out_of_order"],
               "repeated": cnt["repeated"], "unexpected": cnt["unexpected"],
               "fitness": fitness, "conforming": conforming, "furthest": furthest},
        steps={"cases_done": done.sum(axis=0), "skipped_cases": skipped_matrix.sum(axis=0),
               "out_of_order_cases": ooo_cases.sum(axis=0),
               "repeated_cases": rep_cases.sum(axis=0)},
        unexpected=pd.DataFrame({"activity": ctx.activity_names[seen], "events": un_ev[seen],
                                 "cases": un_cases[seen]}))
