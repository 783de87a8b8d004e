"""Process map (directly-follows graph) and variants: what the process actually does.

Definitions follow the process-mining convention (van der Aalst; pm4py's
``discover_dfg`` and ``get_variants``), so figures can be checked against it: an edge
a -> b counts every pair of events of one case where b comes right after a in case-time
order (ties keep the file's order); its time is b's timestamp minus a's; a variant is a
case's whole activity sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insight.context import Context, distinct, grouped_stats
from insight.partials import GroupValues, InProcess, Runner, days_of, micro_sums, summed
from insight.sections import Section


@dataclass
class ProcessMap(Section):
    """The directly-follows graph.

    ``activities``: activity, events, cases, case_share, starts, ends, and the time from
    the case's previous event to it (wait_median_days, wait_p90_days, wait_mean_days),
    mean_position (its mean 0-based place within cases: orders the drawn map).
    ``edges``: source, target, events, cases, case_share, median_days, p90_days,
    mean_days, total_days (sum of all its waits), sorted by events.
    ``starts`` / ``ends``: activity, cases (how many cases start / end with it).
    ``coverage``: share of cases the map was drawn from (the detail slider);
    ``cases_kept`` of ``cases_total``.
    """

    activities: pd.DataFrame = field(default_factory=pd.DataFrame)
    edges: pd.DataFrame = field(default_factory=pd.DataFrame)
    starts: pd.DataFrame = field(default_factory=pd.DataFrame)
    ends: pd.DataFrame = field(default_factory=pd.DataFrame)
    coverage: float = 1.0
    cases_kept: int = 0
    cases_total: int = 0


@dataclass
class Variants(Section):
    """Distinct activity sequences, most frequent first.

    ``table``: variant (1 = most frequent), activities (tuple of names), label (names
    joined by " > "), length, cases, share, cumulative_share, median_cycle_days (first to
    last event), won, lost, win_rate. ``top_n`` / ``tail_share``: the share of cases
    outside the ``top_n`` most frequent variants. ``case_variant``: per case (by number)
    its variant number.
    """

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    top_n: int = 10
    tail_share: float = 0.0
    case_variant: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def top(self, n: int | None = None) -> pd.DataFrame:
        return self.table.head(self.top_n if n is None else n)


def process_map(ctx: Context, coverage: float = 1.0, variants: Variants | None = None,
                runner: Runner | None = None) -> ProcessMap:
    """The DFG of the cases of the most frequent variants covering ``coverage`` of cases
    (1.0: every case). ``runner``: where the partitions' partials are computed (see
    ``insight.partials``; default: this process, the whole log as one partition)."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    keep_case = np.ones(ctx.n_cases, dtype=bool)
    if coverage < 1.0:
        variants = variants if variants is not None else compute_variants(ctx)
        keep_case = kept_by_coverage(variants, coverage)
    partials, stats = (runner or InProcess(ctx)).run(map_partial, wait_stats,
                                                     {"keep": keep_case})
    return map_of(partials, stats, coverage)


def kept_by_coverage(variants: Variants, coverage: float) -> np.ndarray:
    """Cases of the fewest most-frequent variants whose cases reach ``coverage``."""
    cum = variants.table["cumulative_share"].to_numpy()
    n_keep = int(np.searchsorted(cum, coverage - 1e-12) + 1)
    kept = variants.table["variant"].to_numpy()[:n_keep]
    return np.isin(variants.case_variant, kept)


@dataclass
class MapPartial:
    """A partition's share of a process map (its kept cases): ``edges``: source, target,
    events, cases, micros_high, micros_low (the exact sum of its waits, ``micro_sums``);
    ``activities``: activity, events, cases, starts, ends, position (sum of 0-based
    places); ``values``: every wait, by (source, target), bucketed by target (an
    activity's waits are those of the edges into it)."""

    edges: pd.DataFrame
    activities: pd.DataFrame
    cases_kept: int
    cases_total: int
    values: GroupValues | None


def map_partial(ctx: Context, keep: np.ndarray) -> MapPartial:
    """The process map's partial of the cases ``keep`` marks (one flag per case)."""
    k = ctx.n_activities
    names = ctx.activity_names
    keep_ev = keep[ctx.case]
    # edges: pairs (i, i+1) of one case
    rows = ctx.follows
    rows = rows[keep_ev[rows]]
    src, dst = ctx.act[rows], ctx.act[rows + 1]
    edge = src * k + dst
    micros = ctx.t[rows + 1] - ctx.t[rows]
    count = np.bincount(edge, minlength=k * k)
    high, low = micro_sums(edge, micros, k * k)
    pair = distinct(ctx.case[rows] * (k * k) + edge)
    edge_cases = np.bincount(pair % (k * k), minlength=k * k)
    present = np.flatnonzero(count)
    edges = pd.DataFrame({"source": names[present // k], "target": names[present % k],
                          "events": count[present], "cases": edge_cases[present],
                          "micros_high": high[present], "micros_low": low[present]})
    row_of = np.full(k * k, -1, dtype=np.int64)
    row_of[present] = np.arange(present.size)
    values = GroupValues(keys=edges[["source", "target"]], group=row_of[edge], micros=micros,
                         bucket_by=("target",))

    act = ctx.act[keep_ev]
    events = np.bincount(act, minlength=k)
    act_cases = np.bincount(distinct(ctx.case[keep_ev] * k + act) % k, minlength=k)
    firsts = ctx.first_rows[keep[ctx.case[ctx.first_rows]]]
    lasts = ctx.last_rows[keep[ctx.case[ctx.last_rows]]]
    starts = np.bincount(ctx.act[firsts], minlength=k)
    ends = np.bincount(ctx.act[lasts], minlength=k)
    position = np.zeros(k, dtype=np.int64)
    np.add.at(position, act, ctx.position[keep_ev])
    seen = np.flatnonzero(events)
    activities = pd.DataFrame({"activity": names[seen], "events": events[seen],
                               "cases": act_cases[seen], "starts": starts[seen],
                               "ends": ends[seen], "position": position[seen]})
    return MapPartial(edges=edges, activities=activities, cases_kept=int(keep.sum()),
                      cases_total=len(keep), values=values)


def wait_stats(values: GroupValues) -> dict[str, pd.DataFrame]:
    """Median and P90 of the waits per edge and per activity (the edges into it)."""
    return {"edges": values.stats(["source", "target"]),
            "activities": values.stats(["target"]).rename(columns={"target": "activity"})}


def map_of(partials: list[MapPartial], stats: dict[str, pd.DataFrame], coverage: float
           ) -> ProcessMap:
    """The process map from its partitions' partials and the waits' statistics."""
    n_cases = sum(p.cases_kept for p in partials)
    cases_total = sum(p.cases_total for p in partials)
    summed_edges = summed([p.edges for p in partials], ["source", "target"])
    quantiles = stats["edges"]
    summed_edges = summed_edges.merge(quantiles.drop(columns="count"),
                                      on=["source", "target"], how="left")
    total = days_of(summed_edges["micros_high"], summed_edges["micros_low"])
    events = summed_edges["events"].to_numpy()
    cases = summed_edges["cases"].to_numpy()
    edges = pd.DataFrame({
        "source": summed_edges["source"].to_numpy(),
        "target": summed_edges["target"].to_numpy(),
        "events": events,
        "cases": cases,
        "case_share": cases / max(n_cases, 1),
        "median_days": summed_edges["median_days"].to_numpy(dtype=np.float64),
        "p90_days": summed_edges["p90_days"].to_numpy(dtype=np.float64),
        "mean_days": total / events,
        "total_days": total,
    }).sort_values(["events", "source", "target"], ascending=[False, True, True],
                   kind="stable").reset_index(drop=True)

    # activities: counts, starts, ends, time since the case's previous event
    acts = summed([p.activities for p in partials], ["activity"])
    into = summed_edges.groupby("target", sort=False)[
        ["events", "micros_high", "micros_low"]].sum()
    at = into.index.get_indexer(acts["activity"].to_numpy())  # -1: no edge into it
    has = at >= 0
    waits = np.full(len(acts), np.nan)
    waits[has] = into["events"].to_numpy()[at[has]]
    wait_total = np.full(len(acts), np.nan)
    wait_total[has] = days_of(into["micros_high"].to_numpy()[at[has]],
                              into["micros_low"].to_numpy()[at[has]])
    wait_q = acts[["activity"]].merge(stats["activities"], on="activity", how="left")
    act_events = acts["events"].to_numpy()
    act_cases = acts["cases"].to_numpy()
    activities = pd.DataFrame({
        "activity": acts["activity"].to_numpy(),
        "events": act_events,
        "cases": act_cases,
        "case_share": act_cases / max(n_cases, 1),
        "starts": acts["starts"].to_numpy(),
        "ends": acts["ends"].to_numpy(),
        "wait_median_days": wait_q["median_days"].to_numpy(dtype=np.float64),
        "wait_p90_days": wait_q["p90_days"].to_numpy(dtype=np.float64),
        "wait_mean_days": wait_total / waits,
        "mean_position": acts["position"].to_numpy() / act_events,
    }).sort_values(["events", "activity"], ascending=[False, True], kind="stable"
                   ).reset_index(drop=True)
    start_table = (activities.loc[activities["starts"] > 0, ["activity", "starts"]]
                   .rename(columns={"starts": "cases"})
                   .sort_values(["cases", "activity"], ascending=[False, True])
                   .reset_index(drop=True))
    end_table = (activities.loc[activities["ends"] > 0, ["activity", "ends"]]
                 .rename(columns={"ends": "cases"})
                 .sort_values(["cases", "activity"], ascending=[False, True])
                 .reset_index(drop=True))
    return ProcessMap(activities=activities, edges=edges, starts=start_table, ends=end_table,
                      coverage=coverage, cases_kept=n_cases, cases_total=cases_total)


# ------------------------------------------------------------------------ variants
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _case_hashes(ctx: Context, codes: np.ndarray) -> np.ndarray:
    """Two 64-bit polynomial hashes and the length of each case's activity sequence
    (``codes``: each of the context's activity codes in the whole log's coding).

    sum((code + 1) * P**position) wraps modulo 2**64 in numpy's unsigned arithmetic:
    one multiply and one segmented sum per event, no per-case Python work. Two
    independent bases and the length make a collision between two different sequences
    vanishingly unlikely (about 2**-128 per pair)."""
    longest = int(ctx.case_lengths.max())
    powers = []
    for base in (_P1, _P2):
        p = np.full(longest, base, dtype=np.uint64)
        p[0] = np.uint64(1)
        with np.errstate(over="ignore"):
            powers.append(np.cumprod(p, dtype=np.uint64))
    code = (codes[ctx.act] + 1).astype(np.uint64)
    keys = []
    with np.errstate(over="ignore"):
        for p in powers:
            keys.append(np.add.reduceat(code * p[ctx.position], ctx.first_rows,
                                        dtype=np.uint64))
    return np.stack([keys[0], keys[1], ctx.case_lengths.astype(np.uint64)], axis=1)


@dataclass
class HashPartial:
    """A partition's cases' sequence hashes (``_case_hashes``, activities coded as in the
    whole log) for its cases ``number`` in the whole log's ``Context``; and per distinct
    hash (``firsts``: rows of ``keys``, each variant's first case here) that case's
    activity codes in the whole log's coding, end to end in ``sequences`` (each as long
    as its hash's length): one sequence per variant, fewer than the events."""

    number: np.ndarray
    keys: np.ndarray
    firsts: np.ndarray
    sequences: np.ndarray
    values: None = None


def hash_partial(ctx: Context, number: np.ndarray, names: np.ndarray) -> HashPartial:
    """``names``: the whole log's activity names, in its coding."""
    codes = pd.Index(names).get_indexer(ctx.activity_names).astype(np.int64)
    keys = _case_hashes(ctx, codes)
    _, firsts = np.unique(keys, axis=0, return_index=True)
    starts, lengths = ctx.first_rows[firsts], ctx.case_lengths[firsts]
    rows = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(
        int(lengths.sum()))
    return HashPartial(number=number, keys=keys, firsts=firsts,
                       sequences=codes[ctx.act[rows]])


def _sequences(partials: list[HashPartial], variant_keys: np.ndarray) -> list[np.ndarray]:
    """Each variant's activity codes (whole log's coding), from the first partition that
    has a case of it (two cases of one hash have one sequence)."""
    found: dict[tuple[int, ...], np.ndarray] = {}
    for part in partials:  # a loop over partitions, then over their variants
        lengths = part.keys[part.firsts, 2].astype(np.int64)
        ends = np.cumsum(lengths)
        for key, end, n in zip(map(tuple, part.keys[part.firsts].tolist()), ends.tolist(),
                               lengths.tolist(), strict=True):
            found.setdefault(key, part.sequences[end - n:end])
    return [found[key] for key in map(tuple, variant_keys.tolist())]


def compute_variants(ctx: Context, top_n: int = 10, runner: Runner | None = None
                     ) -> Variants:
    """``runner``: where the cases' hashes and each variant's sequence are read
    (``insight.partials``; default: this process, the whole log as one partition)."""
    partials, _ = (runner or InProcess(ctx)).run(
        hash_partial, None, {"number": np.arange(ctx.n_cases)}, names=ctx.activity_names)
    keys = np.zeros((ctx.n_cases, 3), dtype=np.uint64)
    for part in partials:  # a loop over partitions
        keys[part.number] = part.keys
    variant_keys, inverse, counts = np.unique(keys, axis=0, return_inverse=True,
                                              return_counts=True)
    inverse = inverse.ravel()
    n_var = len(counts)
    cycle = ctx.cases["cycle_days"].to_numpy()
    med = grouped_stats(inverse, cycle, n_var)["median"]
    won = np.bincount(inverse, weights=ctx.won, minlength=n_var)
    lost = np.bincount(inverse, weights=ctx.lost, minlength=n_var)
    names = ctx.activity_names
    # one tuple per variant (not per event): the names of one of its cases' events
    sequences = [tuple(names[codes]) for codes in _sequences(partials, variant_keys)]
    lengths = variant_keys[:, 2].astype(np.int64)
    labels = [" > ".join(seq) for seq in sequences]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(won + lost > 0, won / np.maximum(won + lost, 1), np.nan)
    table = pd.DataFrame({
        "activities": sequences, "label": labels, "length": lengths, "cases": counts,
        "share": counts / ctx.n_cases, "median_cycle_days": med,
        "won": won.astype(np.int64), "lost": lost.astype(np.int64), "win_rate": rate,
        "_code": np.arange(n_var),
    })
    table = table.sort_values(["cases", "label"], ascending=[False, True], kind="stable")
    rank = np.empty(n_var, dtype=np.int64)
    rank[table["_code"].to_numpy()] = np.arange(1, n_var + 1)
    table = table.drop(columns="_code").reset_index(drop=True)
    table.insert(0, "variant", np.arange(1, n_var + 1))
    table["cumulative_share"] = table["share"].cumsum()
    tail = float(table["share"].iloc[top_n:].sum())
    return Variants(table=table, top_n=top_n, tail_share=tail, case_variant=rank[inverse])
