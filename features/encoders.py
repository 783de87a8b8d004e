"""Prefix encoders: small transformers in scikit-learn style over the prefix table.

Each encoder learns its vocabulary in ``fit`` (categories, activities) and only
applies it in ``transform``, so a model sees the same columns at training and at
serving. Every quantity is cumulative within the case (cumsum, cummax, forward fill
over rows sorted by time), so a prefix's features depend on its own events only.

Unknown categories policy (all encoders): a value not seen often enough in ``fit``
becomes missing (NaN), which LightGBM routes like any missing value; activity counts
put unknown activities into one ``n_other_activity`` column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features.prefixes import by_case, case_starts, days_between, seconds


def slug(name: str) -> str:
    """A feature-name-safe form: LightGBM rejects JSON special characters in names."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "blank"


def learn_categories(values: pd.Series, min_frequency: int, max_categories: int) -> list[str]:
    """The most frequent values seen at least ``min_frequency`` times, sorted by name."""
    counts = values.dropna().value_counts()
    counts = counts[counts >= min_frequency].head(max_categories)
    return sorted(counts.index.astype(str))


def as_category(values: pd.Series, categories: Sequence[str]) -> pd.Series:
    """Fixed categories; anything else becomes missing (the unknown policy)."""
    return pd.Series(
        pd.Categorical(values.astype("object"), categories=list(categories)), index=values.index
    )


def cumulative_within_case(matrix: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumsum down the rows, restarted at every case start, in one numpy pass."""
    total = np.cumsum(matrix, axis=0)
    before = np.vstack([np.zeros((1, matrix.shape[1]), dtype=total.dtype), total])[starts]
    return total - before


def last_known(prepared: pd.DataFrame, column: str) -> pd.Series:
    """The latest non-missing value at or before each prefix end."""
    return by_case(prepared[column], prepared["case_id"]).ffill()


class PrefixEncoder(TransformerMixin, BaseEstimator):
    """Shared plumbing: names out, and a check that ``fit`` happened."""

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

    def fit(self, prepared: pd.DataFrame, y: object = None) -> AttributeEncoder:
        self.categories_ = {}
        for column in self.categorical:
            cats = learn_categories(prepared[column], self.min_frequency, self.max_categories)
            if cats:
                self.categories_[column] = cats
        self.numeric_ = [c for c in self.numeric if prepared[c].notna().any()]
        self.feature_names_out_ = [*self.categories_, *self.numeric_]
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        out = {col: as_category(last_known(prepared, col), cats)
               for col, cats in self.categories_.items()}
        out.update({col: last_known(prepared, col).astype("float64") for col in self.numeric_})
        return pd.DataFrame(out, index=prepared.index)


class ActivityCountEncoder(PrefixEncoder):
    """How often each activity happened so far, plus loops (repeated activities).

    Re-quotes, approvals, reminders and corrections are all activity counts here, so
    the model sees rework however the export names it.
    """

    def __init__(self, min_frequency: int = 1, max_activities: int = 100) -> None:
        self.min_frequency = min_frequency
        self.max_activities = max_activities

    def fit(self, prepared: pd.DataFrame, y: object = None) -> ActivityCountEncoder:
        self.activities_ = learn_categories(prepared["activity"], self.min_frequency,
                                            self.max_activities)
        self.count_names_ = [f"n_{slug(a)}" for a in self.activities_]
        self.feature_names_out_ = [*self.count_names_, "n_other_activity", "n_events",
                                   "n_repeated_events", "n_distinct_activities"]
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        codes = pd.Categorical(prepared["activity"].astype("object"),
                               categories=self.activities_).codes
        width = len(self.activities_) + 1
        onehot = np.zeros((len(prepared), width), dtype=np.int32)
        onehot[np.arange(len(prepared)), np.where(codes < 0, width - 1, codes)] = 1
        counts = cumulative_within_case(onehot, case_starts(prepared["case_id"]))
        out = pd.DataFrame(counts, columns=[*self.count_names_, "n_other_activity"],
                           index=prepared.index)
        repeated = prepared.groupby(["case_id", "activity"], sort=False).cumcount() > 0
        n_repeated = by_case(repeated.astype("int32"), prepared["case_id"]).cumsum()
        out["n_events"] = prepared["prefix_len"].to_numpy()
        out["n_repeated_events"] = n_repeated.to_numpy()
        out["n_distinct_activities"] = out["n_events"] - out["n_repeated_events"]
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

    def fit(self, prepared: pd.DataFrame, y: object = None) -> NumericHistoryEncoder:
        self.columns_ = [c for c in self.columns if prepared[c].notna().any()]
        self.feature_names_out_ = [f"{c}_{stat}" for c in self.columns_
                                   for stat in ("min", "max", "mean")]
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        cases = prepared["case_id"]
        out = {}
        for col in self.columns_:
            values = prepared[col].astype("float64")
            grouped = by_case(values, cases)
            filled = by_case(values.notna().astype("int64"), cases).cumsum()
            total = by_case(values.fillna(0.0), cases).cumsum()
            out[f"{col}_min"] = by_case(grouped.cummin(), cases).ffill()
            out[f"{col}_max"] = by_case(grouped.cummax(), cases).ffill()
            out[f"{col}_mean"] = (total / filled.where(filled > 0)).astype("float64")
        return pd.DataFrame(out, index=prepared.index)

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

    def _states(self, prepared: pd.DataFrame) -> dict[str, pd.Series]:
        cases = prepared["case_id"]
        return {
            "last_activity": prepared["activity"],
            "prev_activity": by_case(prepared["activity"], cases).shift(1),
            "stage": last_known(prepared, "stage"),
            "last_resource": prepared["resource"],
        }

    def fit(self, prepared: pd.DataFrame, y: object = None) -> LastStateEncoder:
        self.categories_ = {}
        for name, values in self._states(prepared).items():
            cats = learn_categories(values, self.min_frequency, self.max_categories)
            if cats:
                self.categories_[name] = cats
        self.feature_names_out_ = list(self.categories_)
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        states = self._states(prepared)
        return pd.DataFrame({name: as_category(states[name], cats)
                             for name, cats in self.categories_.items()}, index=prepared.index)


class TimeEncoder(PrefixEncoder):
    """Elapsed times, stalls, calendar position in the fiscal quarter, invoice ageing.

    ``max_gap_days`` (longest silence so far) and ``days_in_stage`` capture stalls;
    ``days_to_quarter_end`` captures quarter-end pushes; invoice and due-date ageing
    feed the payment-delay model once an invoice exists.
    """

    def __init__(self, invoice_activities: Sequence[str] = (),
                 fiscal_year_start_month: int = 1) -> None:
        self.invoice_activities = invoice_activities
        self.fiscal_year_start_month = fiscal_year_start_month

    def fit(self, prepared: pd.DataFrame, y: object = None) -> TimeEncoder:
        self.feature_names_out_ = [
            "elapsed_days", "gap_days", "max_gap_days", "mean_gap_days", "days_in_stage",
            "hour", "weekday", "day_in_quarter", "days_to_quarter_end",
            "days_since_invoice", "days_past_due",
        ]
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        cases = prepared["case_id"]
        ts = prepared["timestamp"]
        sec = pd.Series(seconds(ts), index=prepared.index)
        elapsed = days_between(ts, prepared["case_start"])
        gap = (sec - by_case(sec, cases).shift(1)) / 86400.0
        out = pd.DataFrame(index=prepared.index)
        out["elapsed_days"] = elapsed
        out["gap_days"] = gap
        out["max_gap_days"] = by_case(gap, cases).cummax()
        k = prepared["prefix_len"].to_numpy()
        out["mean_gap_days"] = np.where(k > 1, elapsed / np.maximum(k - 1, 1), np.nan)
        out["days_in_stage"] = self._days_in_stage(prepared, sec)
        out["hour"] = ts.dt.hour.astype("float64")
        out["weekday"] = ts.dt.weekday.astype("float64")
        day_in_q, to_end = self._quarter_position(ts)
        out["day_in_quarter"] = day_in_q
        out["days_to_quarter_end"] = to_end
        since_invoice = self._days_since_invoice(prepared, sec)
        out["days_since_invoice"] = since_invoice
        terms = last_known(prepared, "payment_terms_days").to_numpy(dtype="float64")
        out["days_past_due"] = since_invoice - terms
        return out

    def feature_groups(self) -> dict[str, tuple[str, str]]:
        quarter = ("quarter_position", "position in the fiscal quarter (days in, days left)")
        return {"day_in_quarter": quarter, "days_to_quarter_end": quarter}

    @staticmethod
    def _days_in_stage(prepared: pd.DataFrame, sec: pd.Series) -> np.ndarray:
        stage = last_known(prepared, "stage")
        if stage.isna().all():
            return np.full(len(prepared), np.nan)
        cases = prepared["case_id"]
        changed = (stage != by_case(stage, cases).shift(1)) | (
            prepared["prefix_len"] == 1)
        run = changed.cumsum()
        entered = sec.groupby(run, sort=False).transform("first")
        # no stage known yet: missing, as when the log has no stages at all (a case's
        # feature must not depend on whether other cases have stages)
        return ((sec - entered) / 86400.0).where(stage.notna()).to_numpy()

    def _quarter_position(self, ts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Days since the fiscal quarter began and days left until it ends."""
        now = ts.dt.tz_localize(None).to_numpy("datetime64[us]")
        months = now.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        calendar_month = months % 12 + 1
        q_start = months - (calendar_month - self.fiscal_year_start_month) % 3
        start = q_start.astype("datetime64[M]").astype("datetime64[us]")
        end = (q_start + 3).astype("datetime64[M]").astype("datetime64[us]")
        day = np.timedelta64(1, "D")
        return (now - start) / day, (end - now) / day

    def _days_since_invoice(self, prepared: pd.DataFrame, sec: pd.Series) -> np.ndarray:
        if not self.invoice_activities:
            return np.full(len(prepared), np.nan)
        is_invoice = prepared["activity"].isin(self.invoice_activities)
        first = by_case(sec.where(is_invoice), prepared["case_id"]).cummin()
        first = by_case(first, prepared["case_id"]).ffill()
        return ((sec - first) / 86400.0).to_numpy()


class ConformanceEncoder(PrefixEncoder):
    """Deviations from the expected path: steps out of order, stage regressions.

    An event is out of order when the happy path puts it before a step the case already
    reached; a stage regression is a stage earlier than the furthest one reached.
    """

    def __init__(self, expected_order: Sequence[str] = (),
                 stage_order: Sequence[str] = ()) -> None:
        self.expected_order = expected_order
        self.stage_order = stage_order

    def fit(self, prepared: pd.DataFrame, y: object = None) -> ConformanceEncoder:
        names = []
        if self.expected_order:
            names += ["n_out_of_order", "path_progress"]
        if self.stage_order:
            names += ["n_stage_regressions", "stage_index", "max_stage_index"]
        self.feature_names_out_ = names
        return self

    @staticmethod
    def _backward_steps(index: pd.Series, cases: pd.Series) -> tuple[pd.Series, pd.Series]:
        reached = by_case(by_case(index, cases).cummax(), cases).ffill()
        before = by_case(reached, cases).shift(1)
        backward = (index < before).astype("int32")
        return by_case(backward, cases).cumsum(), reached

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_out_")
        cases = prepared["case_id"]
        out = pd.DataFrame(index=prepared.index)
        if self.expected_order:
            position = {a: i for i, a in enumerate(self.expected_order)}
            index = prepared["activity"].map(position).astype("float64")
            out["n_out_of_order"], out["path_progress"] = self._backward_steps(index, cases)
        if self.stage_order:
            position = {s: i for i, s in enumerate(self.stage_order)}
            stage_idx = prepared["stage"].map(position).astype("float64")
            regressions, reached = self._backward_steps(stage_idx, cases)
            out["n_stage_regressions"] = regressions
            out["stage_index"] = by_case(stage_idx, cases).ffill()
            out["max_stage_index"] = reached
        return out
