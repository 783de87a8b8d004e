"""The shared view every insight section reads: events as integer codes, cases as a table.

Every section asks the same questions of the log (which case, which activity, when,
which case comes next), so they are answered once here, on numpy arrays over events
sorted by case and time. Sections then group with ``bincount``, ``unique`` and sorted
reductions instead of Python loops over events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.log import EventLog
from features.mapping import Roles
from features.outcomes import LOST, WON, case_outcomes
from features.prefixes import epoch_micros
from features.schema import ROW_COLUMN

MICROS_PER_DAY = 86_400_000_000.0

#: case attributes a user may segment by, when the log has them
SEGMENT_ATTRIBUTES = ("region", "rep", "lead_source", "product", "contract_type", "account",
                      "payment_terms", "currency")
#: a segment is "month": the calendar month (UTC) of the case's first event
MONTH = "month"


class InsightError(ValueError):
    """An insight request cannot be answered (e.g. an unknown segment attribute)."""


@dataclass
class Context:
    """Events in case-time order as codes, and one row per case.

    ``case``: case number per event (0.. in order, non-decreasing); ``act``: activity
    code per event, names in ``activity_names``; ``t``: microseconds since the epoch;
    ``cases``: per case ``case_id``, ``start``, ``end``, ``cycle_days``, ``events``,
    ``outcome`` (won/lost/open), ``completed``, ``month`` and the case attributes.
    """

    events: pd.DataFrame
    roles: Roles
    as_of: pd.Timestamp
    case: np.ndarray
    act: np.ndarray
    activity_names: np.ndarray
    t: np.ndarray
    cases: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_log(cls, log: EventLog, as_of: pd.Timestamp | None = None) -> Context:
        return cls.from_events(log.events, log.mapping.roles, as_of)

    @classmethod
    def from_events(cls, events: pd.DataFrame, roles: Roles,
                    as_of: pd.Timestamp | None = None,
                    cases: pd.DataFrame | None = None,
                    every_attribute: bool = False) -> Context:
        """Sort (stable: ties keep the file's order), code and summarise per case.

        ``cases``: the case table, when it was made elsewhere (``case_table`` of each
        partition of whole cases, on Dask workers) for events already in case-time
        order; ``events`` then need only the columns the sections read event by event,
        and ``case_id`` may be any key numbering the cases in that order.
        ``every_attribute``: see ``case_table``.
        """
        if len(events) == 0:
            raise InsightError("the log has no events to analyse")
        case_codes, _ = pd.factorize(events["case_id"])  # on the column: arrow encodes it
        t = epoch_micros(events["timestamp"]).astype(np.int64)
        if not _in_case_time_order(case_codes, t):
            tie = (events[ROW_COLUMN].to_numpy() if ROW_COLUMN in events.columns
                   else np.arange(len(events)))
            order = np.lexsort((tie, t, case_codes))
            events = events.take(order).reset_index(drop=True)
            case_codes, t = case_codes[order], t[order]
            case_codes, _ = pd.factorize(case_codes)  # renumber in the new order
        act, names = pd.factorize(events["activity"])
        if as_of is None:
            as_of = pd.Timestamp(int(t.max()), unit="us", tz="UTC")
        ctx = cls(events=events, roles=roles, as_of=as_of, case=case_codes.astype(np.int64),
                  act=act.astype(np.int64), activity_names=np.asarray(names, dtype=object),
                  t=t, cases=pd.DataFrame())
        if not roles.measure_end_activities:  # see case_table's "completed"
            ctx.notes.append("the mapping names no end activities (roles.case_end, "
                             "measure_end): every case counts as completed, none as open "
                             "or stuck")
        if cases is None:
            ctx.cases = ctx.case_table(every_attribute)
        elif len(cases) != ctx.n_cases:
            raise ValueError(f"{len(cases)} rows in the case table for {ctx.n_cases} cases")
        else:
            ctx.cases = cases.reset_index(drop=True)
        return ctx

    @classmethod
    def from_codes(cls, events: pd.DataFrame, roles: Roles, as_of: pd.Timestamp | None,
                   case: np.ndarray, activity: pd.Categorical, t: np.ndarray,
                   cases: pd.DataFrame) -> Context:
        """A ``Context`` of events already in case-time order whose case numbers (0..,
        non-decreasing), activities (as categories) and times (us) are at hand (the
        partitions' events assembled on a Dask driver): ``from_events`` without the
        factorizing and the order checks, which cost more than the arrays they make.
        Activity codes are numbered in order of first appearance, as ``from_events``
        numbers them."""
        codes = np.asarray(activity.codes)
        k = len(activity.categories)
        # each category's first row: one pass per category over one-byte codes (a
        # handful of categories; no per-event index array)
        first = np.array([int(np.argmax(codes == c)) if (codes == c).any() else len(codes)
                          for c in range(k)], dtype=np.int64)
        present = np.flatnonzero(first < len(codes))
        order = present[np.argsort(first[present], kind="stable")]
        rank = np.full(k + 1, -1, dtype=np.int64)  # code -1 (missing) stays -1
        rank[order] = np.arange(order.size)
        names = np.asarray(activity.categories, dtype=object)[order]
        if as_of is None:
            as_of = pd.Timestamp(int(t.max()), unit="us", tz="UTC")
        ctx = cls(events=events, roles=roles, as_of=as_of, case=case, act=rank[codes],
                  activity_names=names, t=t, cases=cases.reset_index(drop=True))
        if len(cases) != ctx.n_cases:
            raise ValueError(f"{len(cases)} rows in the case table for {ctx.n_cases} cases")
        if not roles.measure_end_activities:  # see case_table's "completed"
            ctx.notes.append("the mapping names no end activities (roles.case_end, "
                             "measure_end): every case counts as completed, none as open "
                             "or stuck")
        return ctx

    def subset(self, case_mask: np.ndarray) -> Context:
        """The same analysis restricted to some cases (a segment, a detail level): their
        events, and their rows of the case table without the attributes none of them
        has (as the case table of their events alone would be)."""
        case_mask = np.asarray(case_mask, dtype=bool)
        keep = case_mask[self.case]
        if not keep.any():
            raise InsightError("no case in this selection")
        return Context.from_events(self.events[keep].reset_index(drop=True), self.roles,
                                   self.as_of, cases=without_empty_attributes(
                                       self.cases[case_mask]))

    # ---------------------------------------------------------------- basic facts
    @property
    def n_cases(self) -> int:
        return len(self.first_rows)

    @property
    def n_activities(self) -> int:
        return len(self.activity_names)

    @cached_property
    def first_rows(self) -> np.ndarray:
        """Row of each case's first event."""
        return np.flatnonzero(np.r_[True, self.case[1:] != self.case[:-1]])

    @cached_property
    def last_rows(self) -> np.ndarray:
        return np.r_[self.first_rows[1:] - 1, len(self.case) - 1]

    @cached_property
    def position(self) -> np.ndarray:
        """0-based place of each event within its case."""
        return np.arange(len(self.case)) - np.repeat(self.first_rows, self.case_lengths)

    @cached_property
    def case_lengths(self) -> np.ndarray:
        return self.last_rows - self.first_rows + 1

    @cached_property
    def follows(self) -> np.ndarray:
        """Rows i (of i, i+1) where event i+1 directly follows event i in the same case."""
        return np.flatnonzero(self.case[1:] == self.case[:-1])

    def codes_of(self, activities: list[str] | tuple[str, ...]) -> np.ndarray:
        """Activity codes of the named activities the log holds (absent ones skipped)."""
        wanted = set(activities)
        return np.flatnonzero([a in wanted for a in self.activity_names])

    def has_column(self, name: str) -> bool:
        """Whether the events carry any value in this column."""
        return name in self.events.columns and bool(self.events[name].notna().any())

    def column(self, name: str) -> np.ndarray:
        return self.events[name].to_numpy()

    def case_first_time(self, rows_mask: np.ndarray) -> np.ndarray:
        """Per case, the time (us) of its first event where ``rows_mask`` holds; -1 if none."""
        rows = first_per_case(self.case, np.flatnonzero(rows_mask))
        out = np.full(self.n_cases, -1, dtype=np.int64)
        out[self.case[rows]] = self.t[rows]
        return out

    def case_value(self, name: str, how: str = "first") -> pd.Series:
        """Per case (by number), its first or last non-missing value of an event column."""
        series = self.events[name]
        rows = np.flatnonzero(series.notna().to_numpy())
        rows = first_per_case(self.case, rows[::-1] if how == "last" else rows)
        numeric = pd.api.types.is_numeric_dtype(series.dtype)
        out = pd.Series(np.nan, index=pd.RangeIndex(self.n_cases),
                        dtype="float64" if numeric else object)
        if rows.size:  # take the few rows first: a whole text column as objects is slow
            out.iloc[self.case[rows]] = series.take(rows).to_numpy()
        return out

    # ---------------------------------------------------------------- segments
    def segment_of_cases(self, by: str) -> pd.Series:
        """Per case, its value of the segment attribute (text; missing as "(none)")."""
        if by == MONTH:
            return self.cases[MONTH]
        if by not in self.cases.columns:
            known = [MONTH, *[c for c in self.cases.columns if c in self.segment_columns]]
            raise InsightError(f"cannot segment by {by!r}: the log has no such case "
                               f"attribute; segment by one of {known}")
        column = self.cases[by]
        if isinstance(column.dtype, pd.StringDtype):  # text stays text: no object per case
            return column.fillna("(none)")
        return column.astype(object).where(column.notna(), "(none)").astype(str)

    def segment_codes(self, by: str) -> tuple[np.ndarray, pd.Index]:
        """Per case the number of its segment (``segment_of_cases``) and the segments'
        names, sorted: a groupby on the numbers, sorted, is a groupby on the names,
        sorted, without a Python string per case."""
        codes, names = pd.factorize(self.segment_of_cases(by), sort=True)
        if (codes < 0).any():  # a month is never missing; an attribute is "(none)"
            raise InsightError(f"a case has no value of {by!r}")
        return codes, pd.Index(names)

    @property
    def segment_columns(self) -> list[str]:
        """Case attributes present in this log (the standard ones and mapped extras)."""
        return [c for c in self.cases.columns if c not in _CASE_FACTS]

    # ---------------------------------------------------------------- the case table
    def case_table(self, every_attribute: bool = False) -> pd.DataFrame:
        """One row per case (see the class docstring). The case attributes and ``value``
        are columns when some event has them, or always with ``every_attribute`` (a
        partition's table, whose empty columns ``without_empty_attributes`` drops once
        the partitions are together)."""
        first, last = self.first_rows, self.last_rows
        ids = self.events["case_id"].take(first).to_numpy()
        start = self.t[first]
        end = self.t[last]
        outcome = case_outcomes(self.events, self.roles)
        outcome = outcome.reindex(pd.Index(ids, dtype=outcome.index.dtype)).to_numpy()
        ends = self.roles.measure_end_activities  # as features.outcomes.completed_cases
        if ends:
            completed = np.zeros(self.n_cases, dtype=bool)
            completed[self.case[np.isin(self.act, self.codes_of(ends))]] = True
        else:  # an undecided case may well be over (BPIC 2012's early rejections)
            completed = np.ones(self.n_cases, dtype=bool)
        start_ts = pd.to_datetime(start, unit="us", utc=True)
        table = pd.DataFrame({
            "case_id": ids,
            "start": start_ts,
            "end": pd.to_datetime(end, unit="us", utc=True),
            "cycle_days": (end - start) / MICROS_PER_DAY,
            "events": self.case_lengths,
            "outcome": pd.array(outcome, dtype="str"),
            "completed": completed,
            MONTH: pd.Series(start_ts.tz_convert(None).to_period("M").astype(str)).to_numpy(),
        })
        extras = [c for c in self.events.columns if c not in _EVENT_LEVEL]
        for name in [*SEGMENT_ATTRIBUTES, *[c for c in extras if c not in SEGMENT_ATTRIBUTES]]:
            if name in self.events.columns and name not in table.columns and (
                    every_attribute or self.has_column(name)):
                if pd.api.types.is_numeric_dtype(self.events[name].dtype):
                    continue  # numbers are not segments
                table[name] = self.case_value(name).to_numpy()
        if "value" in self.events.columns and (every_attribute or self.has_column("value")):
            table["value"] = self.case_value("value", how="last").to_numpy(dtype="float64")
        return table

    @property
    def won(self) -> np.ndarray:
        return (self.cases["outcome"] == WON).to_numpy()

    @property
    def lost(self) -> np.ndarray:
        return (self.cases["outcome"] == LOST).to_numpy()


#: per-case facts of the case table, not segment attributes
_CASE_FACTS = frozenset({"case_id", "start", "end", "cycle_days", "events", "outcome",
                         "completed", MONTH, "value"})
#: event-level canonical columns, never case attributes
_EVENT_LEVEL = frozenset({"case_id", "activity", "timestamp", "resource", "value", "stage",
                          "discount_pct", "lost_reason", "payment_terms_days", ROW_COLUMN,
                          "lifecycle"})


def without_empty_attributes(cases: pd.DataFrame) -> pd.DataFrame:
    """A case table without the attribute columns (and ``value``) no case has a value
    of: those ``case_table`` leaves out, as no event gives them."""
    optional = [c for c in cases.columns if c not in _CASE_FACTS or c == "value"]
    empty = [c for c in optional if not cases[c].notna().any()]
    return cases.drop(columns=empty).reset_index(drop=True)


def _in_case_time_order(case_codes: np.ndarray, t: np.ndarray) -> bool:
    """Whether each case's rows are contiguous and in time order (factorize numbers cases
    in order of appearance, so contiguous cases give non-decreasing codes)."""
    if len(case_codes) < 2:
        return True
    step = np.diff(case_codes)
    if (step < 0).any() or (step > 1).any():
        return False
    same = step == 0
    return bool((np.diff(t)[same] >= 0).all())


def first_per_case(case: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each case's first row among ``rows`` (rows in case order, or reversed for the
    last): where the case number changes along ``rows``, no sort needed."""
    if rows.size == 0:
        return rows
    c = case[rows]
    return rows[np.r_[True, c[1:] != c[:-1]]]


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct integers by one sort (numpy's hash-based ``unique`` is slower here)."""
    s = np.sort(values)
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def distinct_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct integers and how often each occurs (one sort)."""
    s = np.sort(values)
    if s.size == 0:
        return s, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return s[starts], np.diff(np.r_[starts, s.size])


def win_rate(won: np.ndarray | pd.Series, lost: np.ndarray | pd.Series) -> float:
    """Won / (won + lost): open cases do not count either way; NaN when none decided."""
    w, lo = float(np.sum(won)), float(np.sum(lost))
    return w / (w + lo) if w + lo else float("nan")


def grouped_stats(keys: np.ndarray, values: np.ndarray, n_groups: int
                  ) -> dict[str, np.ndarray]:
    """Per group 0..n_groups-1: count, sum, mean, median and P90 of ``values``.

    One sort of (key, value) instead of a groupby quantile; quantiles interpolate
    linearly between order statistics, as numpy's and pandas' default does. Missing
    values are left out; a group without values gets NaN. A group's median and P90
    depend on its values alone, not on where the group sits in the sort (the
    interpolation's fraction is taken within the group), so the same values sorted
    elsewhere (a bucket of groups on a Dask worker) give the same bits.
    """
    ok = ~np.isnan(values)
    keys, values = keys[ok], values[ok]
    order = np.argsort(values)
    # then a stable sort by group: a radix sort when the keys fit 16 bits
    small = keys.astype(np.int16) if n_groups < 2**15 else keys
    order = order[np.argsort(small[order], kind="stable")]
    v = values[order]
    counts = np.bincount(keys, minlength=n_groups)
    sums = np.bincount(keys, weights=values, minlength=n_groups)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = {"count": counts, "sum": sums}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    for name, q in (("median", 0.5), ("p90", 0.9)):
        within = q * np.maximum(counts - 1, 0)
        below = np.floor(within)
        frac = within - below
        lo = starts + below.astype(np.int64)
        hi = starts + np.ceil(within).astype(np.int64)
        valid = counts > 0
        res = np.full(n_groups, np.nan)
        if valid.any():
            lo_v, hi_v = v[lo[valid]], v[hi[valid]]
            res[valid] = lo_v + (hi_v - lo_v) * frac[valid]
        out[name] = res
    return out


def money(values: pd.Series | np.ndarray, currencies: pd.Series | np.ndarray | None
          ) -> dict[str, float]:
    """Sum of money per currency (never across currencies); unknown currency kept apart."""
    values = pd.Series(np.asarray(values, dtype="float64"))
    if currencies is None:
        cur = pd.Series("(currency unknown)", index=values.index)
    else:
        cur = pd.Series(np.asarray(currencies, dtype=object)).fillna("(currency unknown)")
    totals = values.groupby(cur.to_numpy()).sum(min_count=1).dropna()
    return {str(k): float(v) for k, v in totals.items()}
