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
    Encoded,
    PrefixEncoder,
    coded,
    learn_categories,
    unique_slugs,
)
from features.prefixes import EventRows, cumulative_within_case

#: a transition is written "a then b" in the feature's words
_THEN = " -> "


def _lagged(rows: EventRows, values: np.ndarray, steps: int) -> np.ndarray:
    """The value ``steps`` rows back within the case (NaN before the case's start)."""
    out = values
    for _ in range(steps):
        out = rows.cases.shift(out)
    return out


def _transitions(rows: EventRows) -> np.ndarray:
    """Per row, "previous activity -> activity" (NaN on a case's first row)."""
    activity = rows["activity"].astype(object)
    before = rows.cases.shift(activity)
    out = np.full(len(rows), np.nan, dtype=object)
    has = ~pd.isna(before)
    out[has] = before[has] + _THEN + activity[has]
    return out


def _counts(codes: np.ndarray, width: int, starts: np.ndarray) -> np.ndarray:
    """Running count per code within the case (codes < 0 counted nowhere)."""
    onehot = np.zeros((len(codes), width + 1), dtype=np.int32)
    onehot[np.arange(len(codes)), np.where(codes < 0, width, codes)] = 1
    return cumulative_within_case(onehot, starts)[:, :width]


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

    def fit(self, prepared: pd.DataFrame, y: object = None) -> SequenceEncoder:
        rows = EventRows(prepared)
        activity = rows["activity"]
        self.lag_categories_ = {}
        for step in self.lags:
            cats = learn_categories(_lagged(rows, activity, step), self.min_frequency,
                                    self.max_categories)
            if cats:
                self.lag_categories_[f"activity_lag_{step}"] = cats
        transitions = _transitions(rows)
        # only transitions into a repeated or varying path are informative, but counting
        # the frequent ones is cheap; a log of one fixed path gives one count per pair
        self.transitions_ = learn_categories(transitions, self.min_frequency,
                                             self.max_transitions)
        self.recency_ = learn_categories(activity, self.min_frequency, self.max_recency)
        taken = list(self.lag_categories_)
        self.transition_names_ = unique_slugs(
            [t.replace(_THEN, " then ") for t in self.transitions_], "n_", taken=taken)
        taken += self.transition_names_
        self.recency_names_ = unique_slugs(self.recency_, "days_since_", taken=taken)
        self.feature_names_out_ = [*self.lag_categories_, *self.transition_names_,
                                   *self.recency_names_]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        activity = rows["activity"]
        out: Encoded = {}
        for name, cats in self.lag_categories_.items():
            step = int(name.rsplit("_", 1)[1])
            out[name] = coded(_lagged(rows, activity, step), cats)
        if self.transitions_:
            codes = coded(_transitions(rows), self.transitions_).codes
            counts = _counts(codes, len(self.transitions_), rows.cases.start)
            out.update(zip(self.transition_names_, counts.T, strict=True))
        if self.recency_:
            sec = rows.sec.astype("float64")
            codes = coded(activity, self.recency_).codes
            for j, name in enumerate(self.recency_names_):
                last_at = rows.cases.ffill(np.where(codes == j, sec, np.nan))
                out[name] = (sec - last_at) / 86400.0
        return out

    def readable_names(self) -> dict[str, str]:
        names = {name: f"activity {name.rsplit('_', 1)[1]} steps back"
                 for name in self.lag_categories_}
        names.update({n: f"times '{t.split(_THEN)[0]}' was followed by '{t.split(_THEN)[1]}'"
                      for n, t in zip(self.transition_names_, self.transitions_, strict=True)})
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

    def fit(self, prepared: pd.DataFrame, y: object = None) -> ChangingAttributeEncoder:
        rows = EventRows(prepared)
        self.values_: dict[str, list[str]] = {}
        for column in self.columns:
            if column not in prepared or not self._changes(rows, column).any():
                continue
            self.values_[column] = learn_categories(rows[column], self.min_frequency,
                                                    self.max_values)
        self.count_names_ = {}
        names: list[str] = []
        for column, values in self.values_.items():
            names += [f"n_{column}_changes", f"n_distinct_{column}"]
            self.count_names_[column] = unique_slugs(values, f"n_{column}_", taken=names)
            names += self.count_names_[column]
        self.feature_names_out_ = names
        return self

    @staticmethod
    def _changes(rows: EventRows, column: str) -> np.ndarray:
        """Rows whose value differs from the case's last value known before them."""
        values = rows[column]
        before = rows.cases.shift(rows.last_known(column))
        known = ~pd.isna(values) & ~pd.isna(before)
        out = np.zeros(len(rows), dtype=bool)
        out[known] = values[known] != before[known]
        return out

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {}
        cases = rows.cases
        for column, values in self.values_.items():
            out[f"n_{column}_changes"] = cases.count(self._changes(rows, column))
            names, _ = pd.factorize(rows[column])  # every value, listed or not
            width = int(names.max(initial=-1)) + 1
            key = cases.case_number() * (width + 1) + names
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            new_value = (first[inverse] == np.arange(len(rows))) & (names >= 0)
            out[f"n_distinct_{column}"] = cases.count(new_value)
            if values:
                counts = _counts(coded(rows[column], values).codes, len(values), cases.start)
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

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        """An attribute's value counts read together (they sum to the events so far)."""
        return {n: (f"{column}_counts", f"how often each {column.replace('_', ' ')} so far")
                for column in self.values_ for n in self.count_names_[column]}
