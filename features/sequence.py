"""Order-aware prefix encoders: what the counts of ``ActivityCountEncoder`` cannot say.

Counts forget order and time: "quote, approval, re-quote" and "re-quote, quote,
approval" count alike, and a reminder sent yesterday counts as one sent a year ago. The
outcome-oriented literature finds the order of the *recent* events and the attributes
that change within a case (who handles it now, how often it changed hands) to carry
what aggregation loses. These encoders add, per prefix:

- ``SequenceEncoder``: the activities two and three steps back (the last and previous
  are ``LastStateEncoder``'s), how often each frequent transition "a then b" occurred,
  and the days since each frequent activity last occurred;
- ``ChangingAttributeEncoder``: for each categorical event attribute whose value changes
  within cases (the resource, a workgroup, a lifecycle state), how often it changed,
  how many distinct values it took, and how often each frequent value occurred.

Like every encoder here they are running quantities over the rows of a case sorted by
time (``EventRows``), so a prefix's features depend on its own events only; what a log
does not have (no repeated activity, no attribute that changes) yields no columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.encoders import (
    Coded,
    Encoded,
    PrefixEncoder,
    event_rows,
    learn_coded_categories,
    recoded,
    unique_slugs,
)
from features.prefixes import EventRows, first_occurrences


def _codes(rows: EventRows, column: str, categories: Sequence[str]) -> np.ndarray:
    """Each row's position in ``categories`` (-1: missing or not listed), looked up once
    per distinct value rather than per row."""
    return recoded(*rows.factorized(column), categories)


def _lagged(rows: EventRows, codes: np.ndarray, steps: int) -> np.ndarray:
    """The code ``steps`` rows back within the case (-1 before the case's start)."""
    out = np.full(len(codes), -1, dtype=np.int64)
    inside = rows.cases.k >= steps
    out[inside] = codes[np.flatnonzero(inside) - steps]
    return out


class SequenceEncoder(PrefixEncoder):
    """Recent order and recency of activities: lags, transition counts, days since.

    ``lags``: which steps back to encode as categories (1 is ``prev_activity``);
    ``max_transitions``: the most frequent "a then b" pairs counted; ``max_recency``: the
    most frequent activities whose days since last occurrence are given.
    """

    def __init__(self, lags: Sequence[int] = (2, 3), max_transitions: int = 30,
                 max_recency: int = 30, min_frequency: int = 5,
                 max_categories: int = 100) -> None:
        self.lags = lags
        self.max_transitions = max_transitions
        self.max_recency = max_recency
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    def _transitions(self, rows: EventRows) -> np.ndarray:
        """Per row, "previous activity then activity" as one code (-1: first row, or an
        activity outside the vocabulary)."""
        codes = _codes(rows, "activity", self.activities_)
        before = _lagged(rows, codes, 1)
        width = len(self.activities_)
        return np.where((codes >= 0) & (before >= 0), before * width + codes, -1)

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None) -> SequenceEncoder:
        rows = event_rows(prepared)
        activity = rows.factorized("activity")
        self.activities_ = learn_coded_categories(*activity, self.min_frequency,
                                                  self.max_categories)
        longest = int(rows.cases.k.max(initial=-1)) + 1
        self.lags_ = [step for step in self.lags if step < longest and self.activities_]
        width = len(self.activities_)
        pairs = self._transitions(rows)
        counts = np.bincount(pairs[pairs >= 0], minlength=width * width)
        frequent = np.flatnonzero(counts >= self.min_frequency)
        ranked = frequent[np.argsort(-counts[frequent], kind="stable")][:self.max_transitions]
        self.transitions_ = sorted(int(p) for p in ranked)
        self.transition_pairs_ = [(self.activities_[p // width], self.activities_[p % width])
                                  for p in self.transitions_]
        self.recency_ = learn_coded_categories(*activity, self.min_frequency,
                                               self.max_recency)
        self.lag_names_ = [f"activity_lag_{step}" for step in self.lags_]
        self.transition_names_ = unique_slugs(
            [f"{a} then {b}" for a, b in self.transition_pairs_], "n_", taken=self.lag_names_)
        self.recency_names_ = unique_slugs(self.recency_, "days_since_",
                                           taken=[*self.lag_names_, *self.transition_names_])
        self.feature_names_out_ = [*self.lag_names_, *self.transition_names_,
                                   *self.recency_names_]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {}
        if self.lags_:
            codes = _codes(rows, "activity", self.activities_)
            categories = tuple(self.activities_)
            for step, name in zip(self.lags_, self.lag_names_, strict=True):
                out[name] = Coded(_lagged(rows, codes, step).astype(np.int32), categories)
        if self.transitions_:
            column = np.full(len(self.activities_) ** 2, -1, dtype=np.int64)
            column[self.transitions_] = np.arange(len(self.transitions_))
            pairs = self._transitions(rows)
            which = np.where(pairs >= 0, column[np.maximum(pairs, 0)], -1)
            counts = rows.cases.running_counts(which, len(self.transitions_))
            out.update(zip(self.transition_names_, counts.T, strict=True))
        if self.recency_:
            out.update(zip(self.recency_names_, self._days_since(rows), strict=True))
        return out

    def _days_since(self, rows: EventRows) -> list[np.ndarray]:
        """Per recency activity, days since its latest occurrence in the case at or
        before each row (NaN before the first): ``(sec - ffill(sec where it occurred))
        / 86400``, with the latest row found by a running maximum of row numbers into
        buffers shared by every activity."""
        n = len(rows)
        sec = rows.sec.astype("float64")
        codes = _codes(rows, "activity", self.recency_)
        positions, start = np.arange(n), rows.cases.start
        last = np.empty(n, dtype=np.int64)
        occurred = np.empty(n, dtype=bool)
        at = np.empty(n, dtype="float64")
        days = []
        for j in range(len(self.recency_)):
            np.equal(codes, j, out=occurred)
            last.fill(-1)
            np.copyto(last, positions, where=occurred)
            np.maximum.accumulate(last, out=last)
            np.take(sec, last, out=at)  # row -1 (none yet) is masked below
            since = np.subtract(sec, at)
            since /= 86400.0
            np.less(last, start, out=occurred)  # no occurrence in the case yet
            since[occurred] = np.nan
            days.append(since)
        return days

    def summary_names(self) -> list[str]:
        return [*self.transition_names_, *self.recency_names_]

    def readable_names(self) -> dict[str, str]:
        names = {name: f"activity {step} steps back"
                 for step, name in zip(self.lags_, self.lag_names_, strict=True)}
        names.update({n: f"times '{a}' was followed by '{b}'" for n, (a, b) in
                      zip(self.transition_names_, self.transition_pairs_, strict=True)})
        names.update({n: f"days since '{a}' last happened"
                      for n, a in zip(self.recency_names_, self.recency_, strict=True)})
        return names


class ChangingAttributeEncoder(PrefixEncoder):
    """Categorical event attributes that change within cases: changes, distinct values,
    and counts of the frequent values so far.

    ``AttributeEncoder`` gives such an attribute's last value only; a ticket passed
    between three workgroups or an application touched by five clerks differs from one
    that never changed hands. Attributes constant within every training case (case
    attributes repeated on each event) are skipped in ``fit``: for them the counts say
    nothing the last value does not.
    """

    def __init__(self, columns: Sequence[str] = (), min_frequency: int = 5,
                 max_values: int = 20) -> None:
        self.columns = columns
        self.min_frequency = min_frequency
        self.max_values = max_values

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None
            ) -> ChangingAttributeEncoder:
        rows = event_rows(prepared)
        self.values_: dict[str, list[str]] = {}
        for column in self.columns:
            if column not in rows:
                continue
            names, uniques = rows.factorized(column)
            if len(uniques) < 2 or not rows.changes(column).any():
                continue  # one value (or none) cannot change
            self.values_[column] = learn_coded_categories(names, uniques, self.min_frequency,
                                                          self.max_values)
        self.count_names_ = {}
        names_out: list[str] = []
        for column, values in self.values_.items():
            names_out += [f"n_{column}_changes", f"n_distinct_{column}"]
            self.count_names_[column] = unique_slugs(values, f"n_{column}_", taken=names_out)
            names_out += self.count_names_[column]
        self.feature_names_out_ = names_out
        return self

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {}
        cases = rows.cases
        for column, values in self.values_.items():
            names, _ = rows.factorized(column)  # every value, listed or not
            out[f"n_{column}_changes"] = cases.count(rows.changes(column))
            width = int(names.max(initial=-1)) + 1
            key = cases.case_number() * (width + 1) + names
            new_value = first_occurrences(key) & (names >= 0)
            out[f"n_distinct_{column}"] = cases.count(new_value)
            if values:
                counts = cases.running_counts(_codes(rows, column, values), len(values))
                out.update(zip(self.count_names_[column], counts.T, strict=True))
        return out

    def readable_names(self) -> dict[str, str]:
        names = {}
        for column, values in self.values_.items():
            words = column.replace("_", " ")
            names[f"n_{column}_changes"] = f"times the {words} changed so far"
            names[f"n_distinct_{column}"] = f"distinct {words} values so far"
            names.update({n: f"events with {words} '{v}' so far"
                          for n, v in zip(self.count_names_[column], values, strict=True)})
        return names

    def summary_names(self) -> list[str]:
        return [n for column in self.values_ for n in self.count_names_[column]]

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        """An attribute's value counts read together (they sum to the events so far)."""
        return {n: (f"{column}_counts", f"how often each {column.replace('_', ' ')} so far")
                for column in self.values_ for n in self.count_names_[column]}
