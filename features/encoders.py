"""Prefix encoders: small transformers in scikit-learn style over the prefix table.

Each encoder learns its vocabulary in ``fit`` (categories, activities) and only
applies it in ``transform``, so a model sees the same columns at training and at
serving. Every quantity is cumulative within the case (running sums, maxima, last
known values over rows sorted by time), so a prefix's features depend on its own
events only. The arithmetic is numpy over whole columns (``CaseRows``): one code path
serves a million training rows and one running case alike.

Unknown categories policy (all encoders): a value not seen often enough in ``fit``
becomes missing (NaN), which LightGBM routes like any missing value; activity counts
put unknown activities into one ``n_other_activity`` column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features.prefixes import EventRows, Lookup, first_occurrences, seconds


def slug(name: str) -> str:
    """A feature-name-safe form: LightGBM rejects JSON special characters in names."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "blank"


def unique_slugs(names: Sequence[str], prefix: str, taken: Sequence[str] = ()) -> list[str]:
    """``prefix + slug(name)`` for each name, numbered where two would be the same.

    Real exports hold activities such as "Quote Issued" and "Quote-Issued", or one
    named "Events", whose slugs meet each other or a fixed feature name; numbering
    keeps every name's own column instead of failing the whole training.
    """
    used = set(taken)
    out = []
    for name in names:
        base = candidate = f"{prefix}{slug(name)}"
        number = 2
        while candidate in used:
            candidate, number = f"{base}_{number}", number + 1
        used.add(candidate)
        out.append(candidate)
    return out


def learn_coded_categories(codes: np.ndarray, uniques: np.ndarray, min_frequency: int,
                           max_categories: int) -> list[str]:
    """The most frequent values seen at least ``min_frequency`` times (at most
    ``max_categories``), sorted by name, from factorized codes (-1: missing) with
    ``uniques`` in order of first appearance (``pd.factorize``): a count per code
    instead of a pandas Series of every row's value. Equal counts keep that order, as
    ``value_counts`` keeps them, so the same values are cut at ``max_categories``."""
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    ranked = np.argsort(-counts, kind="stable")
    ranked = ranked[counts[ranked] >= min_frequency][:max_categories]
    return sorted(str(value) for value in uniques[ranked])


def event_rows(prepared: pd.DataFrame | EventRows) -> EventRows:
    """``fit`` takes the prepared frame (scikit-learn style) or its ``EventRows``, which
    ``PrefixPipeline.fit`` shares between encoders so each column is converted once."""
    return prepared if isinstance(prepared, EventRows) else EventRows(prepared)


@dataclass(frozen=True)
class Coded:
    """A categorical feature: codes into fixed categories, -1 where missing or unknown."""

    codes: np.ndarray
    categories: tuple[str, ...]


Encoded = dict[str, "np.ndarray | Coded"]


@lru_cache(maxsize=1024)
def _lookup(categories: tuple[str, ...]) -> Lookup:
    return Lookup(categories)


@lru_cache(maxsize=1024)
def category_dtype(categories: tuple[str, ...]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(list(categories))


def coded(values: np.ndarray, categories: Sequence[str]) -> Coded:
    """Fixed categories; anything else becomes missing (the unknown policy)."""
    cats = tuple(categories)
    return Coded(codes=_lookup(cats).positions(values).astype(np.int32), categories=cats)


def recoded(codes: np.ndarray, uniques: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """``coded(uniques[codes], categories).codes`` as int64: each distinct value looked
    up once rather than each row's (-1 stays missing)."""
    if not len(uniques):
        return np.full(len(codes), -1, dtype=np.int64)
    at = np.append(coded(np.asarray(uniques, dtype=object), categories).codes, -1)
    return at.astype(np.int64)[codes]  # code -1 picks the -1 at the end


def coded_from(codes: np.ndarray, uniques: np.ndarray, categories: Sequence[str]) -> Coded:
    """``coded(uniques[codes], categories)``, looked up per distinct value."""
    return Coded(recoded(codes, uniques, categories).astype(np.int32), tuple(categories))


def coded_column(rows: EventRows, column: str, categories: Sequence[str],
                 last_known: bool = False) -> Coded:
    """``coded(rows[column], categories)`` (or of ``rows.last_known(column)``), looked
    up per distinct value of the column."""
    return coded_from(*(rows.last_known_codes if last_known else rows.factorized)(column),
                      categories)


def as_frame(encoded: Encoded, index: pd.Index) -> pd.DataFrame:
    """Encoded features as a frame: categoricals with their training categories."""
    columns = {name: pd.Categorical.from_codes(value.codes, dtype=category_dtype(
                   value.categories), validate=False) if isinstance(value, Coded) else value
               for name, value in encoded.items()}
    return pd.DataFrame(columns, index=index, copy=False)


class PrefixEncoder(TransformerMixin, BaseEstimator):
    """Shared plumbing: names out, a check that ``fit`` happened, and ``transform`` as
    a frame of what ``encode`` computes on the prepared table's arrays."""

    #: whether a row's features read other cases (cross-case facts). When they do not,
    #: they depend only on the row's own case up to the row, and ``PrefixPipeline`` may
    #: give the encoder only the prefixes it keeps (``EventRows.head``)
    reads_other_cases: ClassVar[bool] = False

    def encode(self, rows: EventRows) -> Encoded:
        """Feature name -> values per row (``Coded`` for categoricals)."""
        raise NotImplementedError

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        return as_frame(self.encode(EventRows(prepared)), prepared.index)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def readable_names(self) -> dict[str, str]:
        """Feature name -> words a sales rep reads; encoders refine this."""
        check_is_fitted(self, "feature_names_out_")
        return {name: name.replace("_", " ") for name in self.feature_names_out_}

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        """Feature -> (group, words) for features that describe one thing together.

        Explanations add up a group's contributions: the min, max and mean of one
        discount are near-collinear, and a linear base splits their effect into large
        opposite terms that only make sense summed.
        """
        return {}

    def summary_names(self) -> list[str]:
        """Features that restate the sequence in many sparse columns, or the calendar:
        the trees read them only where they beat the other features by a wide margin
        (``training.config.TrainConfig.summary_penalty``). On a log of short cases they
        hold little the last state and the lags do not, and a tree still splits on them
        for small gains that do not carry over to later cases (Helpdesk:
        ``docs/benchmarks.md``)."""
        return []


class AttributeEncoder(PrefixEncoder):
    """Case and event attributes as known at the prefix end (last non-missing value).

    Categorical attributes get fixed training categories; numeric ones pass as floats.
    Attributes that are empty in the training log are dropped in ``fit``.
    """

    def __init__(self, categorical: Sequence[str] = (), numeric: Sequence[str] = (),
                 min_frequency: int = 5, max_categories: int = 100) -> None:
        self.categorical = categorical
        self.numeric = numeric
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None) -> AttributeEncoder:
        rows = event_rows(prepared)
        self.categories_ = {}
        for column in self.categorical:
            cats = learn_coded_categories(*rows.factorized(column), self.min_frequency,
                                          self.max_categories)
            if cats:
                self.categories_[column] = cats
        self.numeric_ = [c for c in self.numeric if rows.filled(c)]
        self.feature_names_out_ = [*self.categories_, *self.numeric_]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {col: coded_column(rows, col, cats, last_known=True)
                        for col, cats in self.categories_.items()}
        out.update({col: np.asarray(rows.last_known(col), dtype="float64")
                    for col in self.numeric_})
        return out


class DateAttributeEncoder(PrefixEncoder):
    """Dates a case carries (a due date, a planned close) as days from the prefix end.

    The date itself would stand in for the calendar; how far away it is, as known at
    the prefix end (the last value given at or before it), is what bears on the case.
    """

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = columns

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None
            ) -> DateAttributeEncoder:
        rows = event_rows(prepared)
        self.columns_ = [c for c in self.columns if rows.filled(c)]
        self.feature_names_out_ = unique_slugs(self.columns_, "days_until_")
        return self

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {}
        for column, name in zip(self.columns_, self.feature_names_out_, strict=True):
            date_sec = seconds(rows.array(column))
            given = np.where(date_sec == np.iinfo(np.int64).min, np.nan, date_sec)
            out[name] = (rows.cases.ffill(given) - rows.sec) / 86400.0
        return out

    def readable_names(self) -> dict[str, str]:
        return {name: f"days until '{column}'"
                for column, name in zip(self.columns_, self.feature_names_out_, strict=True)}


class ActivityCountEncoder(PrefixEncoder):
    """How often each activity happened so far, plus loops (repeated activities).

    Re-quotes, approvals, reminders and corrections are all activity counts here, so
    the model sees rework however the export names it.
    """

    def __init__(self, min_frequency: int = 1, max_activities: int = 100) -> None:
        self.min_frequency = min_frequency
        self.max_activities = max_activities

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None
            ) -> ActivityCountEncoder:
        self.activities_ = learn_coded_categories(*event_rows(prepared).factorized("activity"),
                                                  self.min_frequency, self.max_activities)
        fixed = ["n_other_activity", "n_events", "n_repeated_events", "n_distinct_activities"]
        self.count_names_ = unique_slugs(self.activities_, "n_", taken=fixed)
        self.feature_names_out_ = [*self.count_names_, *fixed]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        cases = rows.cases
        codes = coded_column(rows, "activity", self.activities_).codes
        width = len(self.activities_) + 1  # the last column: unlisted activities
        unlisted = codes < 0  # or missing
        counts = cases.running_counts(np.where(unlisted, width - 1, codes), width)
        out: Encoded = dict(zip([*self.count_names_, "n_other_activity"], counts.T,
                                strict=True))
        # an event repeats a step when its (case, activity) occurred before in the case
        if not unlisted.any():  # every activity has its own count: more than one so far
            repeated = counts.reshape(-1, order="F")[codes * len(rows) + np.arange(len(rows))] > 1
        else:  # unlisted ones share a count: tell them apart by name
            names, _ = rows.factorized("activity")  # per name, listed or not
            names = np.where(names < 0, names.max(initial=-1) + 1, names)  # missing: own code
            key = cases.case_number() * (int(names.max(initial=0)) + 1) + names
            repeated = ~first_occurrences(key)
        n_repeated = cases.count(repeated)
        out["n_events"] = cases.k + 1
        out["n_repeated_events"] = n_repeated
        out["n_distinct_activities"] = cases.k + 1 - n_repeated
        return out

    def readable_names(self) -> dict[str, str]:
        names = {n: f"times '{a}' so far" for n, a in zip(self.count_names_, self.activities_,
                                                          strict=True)}
        names.update({"n_other_activity": "unlisted activities so far",
                      "n_events": "events so far", "n_repeated_events": "repeated steps (rework)",
                      "n_distinct_activities": "distinct steps so far"})
        return names


class NumericHistoryEncoder(PrefixEncoder):
    """Min, max and mean so far of event-level numbers (discount % across re-quotes)."""

    def __init__(self, columns: Sequence[str] = ("discount_pct",)) -> None:
        self.columns = columns

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None
            ) -> NumericHistoryEncoder:
        rows = event_rows(prepared)
        self.columns_ = [c for c in self.columns if rows.filled(c)]
        self.feature_names_out_ = [f"{c}_{stat}" for c in self.columns_
                                   for stat in ("min", "max", "mean")]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        cases = rows.cases
        out: Encoded = {}
        for col in self.columns_:
            values = rows.floats(col)
            present = ~np.isnan(values)
            filled = cases.count(present)
            total = cases.scan(np.add, np.where(present, values, 0.0))
            out[f"{col}_min"] = cases.scan(np.fmin, values)
            out[f"{col}_max"] = cases.scan(np.fmax, values)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{col}_mean"] = np.where(filled > 0, total / filled, np.nan)
        return out

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        """Each number's min, max and mean, with its current value (the attribute ``c``)."""
        groups = {}
        for c in self.columns_:
            words = (c, f"{c.replace('_', ' ')} (now, and min, max, mean so far)")
            groups.update({name: words for name in (c, f"{c}_min", f"{c}_max", f"{c}_mean")})
        return groups


class LastStateEncoder(PrefixEncoder):
    """Where the case stands: last and previous activity, current stage, last resource."""

    def __init__(self, min_frequency: int = 5, max_categories: int = 100) -> None:
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    @staticmethod
    def _states(rows: EventRows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each state as codes into the distinct values of its column (-1: missing)."""
        activity, names = rows.factorized("activity")
        return {
            "last_activity": (activity, names),
            "prev_activity": (rows.cases.shift(activity, fill=-1), names),
            "stage": rows.last_known_codes("stage"),
            "last_resource": rows.factorized("resource"),
        }

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None) -> LastStateEncoder:
        self.categories_ = {}
        for name, (codes, uniques) in self._states(event_rows(prepared)).items():
            cats = learn_coded_categories(codes, uniques, self.min_frequency,
                                          self.max_categories)
            if cats:
                self.categories_[name] = cats
        self.feature_names_out_ = list(self.categories_)
        return self

    def encode(self, rows: EventRows) -> Encoded:
        states = self._states(rows)
        return {name: coded_from(*states[name], cats) for name, cats in self.categories_.items()}


class TimeEncoder(PrefixEncoder):
    """Elapsed times, stalls, calendar position in the fiscal quarter, invoice ageing.

    ``max_gap_days`` (longest silence so far) and ``days_in_stage`` capture stalls;
    ``days_to_quarter_end`` captures quarter-end pushes; invoice and due-date ageing
    feed the payment-delay model once an invoice exists.
    """

    def __init__(self, invoice_activities: Sequence[str] = (),
                 fiscal_year_start_month: int = 1, min_calendar_cycles: float = 4.0) -> None:
        self.invoice_activities = invoice_activities
        self.fiscal_year_start_month = fiscal_year_start_month
        #: a calendar feature is kept only when the training events span this many cycles
        self.min_calendar_cycles = min_calendar_cycles

    #: calendar features and the length of their cycle in days
    CALENDAR_CYCLES: ClassVar[dict[str, float]] = {
        "hour": 1.0, "weekday": 7.0, "day_in_quarter": 365.25 / 4,
        "days_to_quarter_end": 365.25 / 4}
    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None) -> TimeEncoder:
        """Keep a calendar feature only when the training span covers its cycle several
        times (``min_calendar_cycles``). On a shorter log it does not describe a recurring
        position (quarter end) but stands in for the date: on a five-month log the
        position in the quarter and the days to its end single out the day, so a model
        learns the dates of the training cases' outcomes, and answers for later dates
        from whatever the training block's end looked like."""
        rows = event_rows(prepared)
        sec = rows.sec if len(prepared) else np.zeros(0)
        span_days = float(sec.max() - sec.min()) / 86400.0 if len(sec) else 0.0
        self.span_days_ = span_days
        self.dropped_calendar_ = [name for name, cycle in self.CALENDAR_CYCLES.items()
                                  if span_days < self.min_calendar_cycles * cycle]
        # a log without stages or without invoices (most public logs) would give these
        # columns missing on every row: nothing to read (``features.pruning``)
        unread: set[str] = set()
        if not len(prepared) or np.isnan(self._days_in_stage(rows)).all():
            unread.add("days_in_stage")
        if not len(prepared) or np.isnan(self._days_since_invoice(rows)).all():
            unread |= {"days_since_invoice", "days_past_due"}
        self.feature_names_out_ = [
            name for name in ("elapsed_days", "gap_days", "max_gap_days", "mean_gap_days",
                              "days_in_stage", "hour", "weekday", "day_in_quarter",
                              "days_to_quarter_end", "days_since_invoice", "days_past_due")
            if name not in self.dropped_calendar_ and name not in unread]
        return self

    def encode(self, rows: EventRows) -> Encoded:
        encoded = self._encode_all(rows)
        if len(encoded) == len(self.feature_names_out_):
            return encoded
        return {name: encoded[name] for name in self.feature_names_out_}

    def _encode_all(self, rows: EventRows) -> Encoded:
        cases, sec = rows.cases, rows.sec
        first = sec[cases.start]
        elapsed = (sec - first) / 86400.0
        gap = np.where(cases.k > 0, (sec - cases.shift(sec, fill=0)) / 86400.0, np.nan)
        k = cases.k + 1
        quarter = [n for n in ("day_in_quarter", "days_to_quarter_end")
                   if n not in getattr(self, "dropped_calendar_", ())]
        day_in_q, to_end = (self._quarter_position(rows.micros()) if quarter  # else unused
                            else (np.full(len(rows), np.nan),) * 2)
        since_invoice = self._days_since_invoice(rows)
        terms = np.asarray(rows.last_known("payment_terms_days"), dtype="float64")
        return {
            "elapsed_days": elapsed,
            "gap_days": gap,
            "max_gap_days": cases.scan(np.fmax, gap),
            "mean_gap_days": np.where(k > 1, elapsed / np.maximum(k - 1, 1), np.nan),
            "days_in_stage": self._days_in_stage(rows),
            "hour": (np.floor_divide(sec, 3600) % 24).astype("float64"),
            "weekday": ((np.floor_divide(sec, 86400) + 3) % 7).astype("float64"),  # 1970-01-01: Thu
            "day_in_quarter": day_in_q,
            "days_to_quarter_end": to_end,
            "days_since_invoice": since_invoice,
            "days_past_due": since_invoice - terms,
        }

    def summary_names(self) -> list[str]:
        return [n for n in ("day_in_quarter", "days_to_quarter_end")
                if n in self.feature_names_out_]

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        quarter = ("quarter_position", "position in the fiscal quarter (days in, days left)")
        return {name: quarter for name in ("day_in_quarter", "days_to_quarter_end")
                if name in self.feature_names_out_}

    @staticmethod
    def _days_in_stage(rows: EventRows) -> np.ndarray:
        cases = rows.cases
        stage, _ = rows.last_known_codes("stage")  # -1: no stage known yet
        known = stage >= 0
        if not known.any():
            return np.full(len(rows), np.nan)
        before = cases.shift(stage, fill=-1)
        # a stage's run starts where the known stage differs from the row before's
        changed = (cases.k == 0) | ~known | (before < 0) | (stage != before)
        entered = rows.sec[np.maximum.accumulate(np.where(changed, np.arange(len(rows)), 0))]
        # no stage known yet: missing, as when the log has no stages at all (a case's
        # feature must not depend on whether other cases have stages)
        return np.where(known, (rows.sec - entered) / 86400.0, np.nan)

    def _quarter_position(self, now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Days since the fiscal quarter began and days left until it ends."""
        months = now.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        calendar_month = months % 12 + 1
        q_start = months - (calendar_month - self.fiscal_year_start_month) % 3
        start = q_start.astype("datetime64[M]").astype("datetime64[us]")
        end = (q_start + 3).astype("datetime64[M]").astype("datetime64[us]")
        day = np.timedelta64(1, "D")
        return (now - start) / day, (end - now) / day

    def _days_since_invoice(self, rows: EventRows) -> np.ndarray:
        if not self.invoice_activities:
            return np.full(len(rows), np.nan)
        activity, names = rows.factorized("activity")
        listed = np.append(np.isin(names, list(self.invoice_activities)), False)
        is_invoice = listed[activity]  # code -1 (missing) picks the False at the end
        sec = rows.sec.astype("float64")
        first = rows.cases.scan(np.fmin, np.where(is_invoice, sec, np.nan))
        return (sec - first) / 86400.0


class ConformanceEncoder(PrefixEncoder):
    """Deviations from the expected path: steps out of order, stage regressions.

    An event is out of order when the happy path puts it before a step the case already
    reached; a stage regression is a stage earlier than the furthest one reached.
    """

    def __init__(self, expected_order: Sequence[str] = (),
                 stage_order: Sequence[str] = ()) -> None:
        self.expected_order = expected_order
        self.stage_order = stage_order

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None
            ) -> ConformanceEncoder:
        names = []
        if self.expected_order:
            names += ["n_out_of_order", "path_progress"]
        if self.stage_order:
            names += ["n_stage_regressions", "stage_index", "max_stage_index"]
        self.feature_names_out_ = names
        return self

    @staticmethod
    def _backward_steps(rows: EventRows, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps back (below the furthest point reached before) so far, and that point."""
        reached = rows.cases.scan(np.fmax, index)
        before = rows.cases.shift(reached)
        with np.errstate(invalid="ignore"):
            backward = index < before  # missing on either side: not a step back
        return rows.cases.count(backward), reached

    def encode(self, rows: EventRows) -> Encoded:
        out: Encoded = {}
        if self.expected_order:
            index = _positions_of(rows, "activity", self.expected_order)
            out["n_out_of_order"], out["path_progress"] = self._backward_steps(rows, index)
        if self.stage_order:
            stage_idx = _positions_of(rows, "stage", self.stage_order)
            regressions, reached = self._backward_steps(rows, stage_idx)
            out["n_stage_regressions"] = regressions
            out["stage_index"] = rows.cases.ffill(stage_idx)
            out["max_stage_index"] = reached
        return out

    def readable_names(self) -> dict[str, str]:
        """Positions said with the ends of their scale, so "2" means something to a rep."""
        names = {}
        if self.expected_order:
            path = list(self.expected_order)
            names.update({
                "n_out_of_order": "steps taken out of the expected order so far",
                "path_progress": f"furthest step of the expected path reached (0 = "
                                 f"'{path[0]}', {len(path) - 1} = '{path[-1]}')"})
        if self.stage_order:
            stages = list(self.stage_order)
            scale = f"(0 = {stages[0]}, {len(stages) - 1} = {stages[-1]})"
            names.update({"n_stage_regressions": "times the stage moved back so far",
                          "stage_index": f"current sales stage {scale}",
                          "max_stage_index": f"furthest sales stage reached {scale}"})
        return {n: names.get(n, n.replace("_", " ")) for n in self.feature_names_out_}


def _positions_of(rows: EventRows, column: str, order: Sequence[str]) -> np.ndarray:
    """Each row's value's place in ``order`` as a float; NaN where it is not listed."""
    codes = coded_column(rows, column, order).codes
    return np.where(codes >= 0, codes, np.nan).astype("float64")
