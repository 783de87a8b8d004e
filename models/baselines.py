"""Baselines: what users have today, on the same split, so a model's gain is honest.

- win/loss: the base rate, the historical win rate of the prefix's current stage (what
  CRM stage probabilities give) and a logistic regression on the same features;
- remaining time: the median remaining time by last activity;
- payment delay: the account's mean past delay, else the mean for the payment terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.matrix import Matrix, as_matrix


def _group_column(X: pd.DataFrame, preferred: tuple[str, ...]) -> str | None:
    return next((c for c in preferred if c in X.columns), None)


def _keys(X: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series("all", index=X.index)
    return X[column].astype("object").fillna("(missing)")


class GroupStatBaseline:
    """A statistic of the target per group of one column, the overall one for new groups.

    It reads the feature frame or its float matrix (``models.matrix``): a baseline may be
    the model that is shipped (``models.selection``), and the API scores from the matrix.
    """

    def __init__(self, preferred: tuple[str, ...], stat: str = "mean") -> None:
        self.preferred = preferred
        self.stat = stat

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> GroupStatBaseline:
        self.column_ = _group_column(X, self.preferred)
        target = pd.Series(np.asarray(y, dtype=float), index=X.index)
        self.table_ = target.groupby(_keys(X, self.column_)).agg(self.stat)
        self.overall_ = float(target.agg(self.stat)) if len(target) else 0.0
        self.position_ = None if self.column_ is None else list(X.columns).index(self.column_)
        self.code_table_: np.ndarray | None = None
        if self.column_ is not None and isinstance(X[self.column_].dtype, pd.CategoricalDtype):
            levels = [*X[self.column_].cat.categories, "(missing)"]
            self.code_table_ = np.array([float(self.table_.get(c, self.overall_))
                                         for c in levels])
        return self

    def predict(self, X: Matrix) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            values = _keys(X, self.column_).map(self.table_)
            return values.fillna(self.overall_).to_numpy(dtype=float)
        M = np.asarray(X, dtype="float64")
        if self.position_ is None:
            return np.full(len(M), self.overall_)
        column = M[:, self.position_]
        if self.code_table_ is not None:  # category codes, NaN for missing
            missing = len(self.code_table_) - 1
            codes = np.where(np.isnan(column), missing, column).astype(np.int64)
            return self.code_table_[np.clip(codes, 0, missing)]
        values = pd.Series(column).map(lambda v: self.table_.get(v, self.overall_))
        return values.to_numpy(dtype=float)


class RateBaseline:
    """A win rate as a win model: per group of one column (the stage rate) or overall
    (``preferred=()``: the base rate).

    It has the logistic base's interface (``decision_function``, ``terms``,
    ``intercept_``) so a :class:`~models.estimators.WinProbabilityModel` can ship it as
    its whole model: the log-odds are the overall rate's plus one term, the group's
    difference from it, owned by the group's column.
    """

    def __init__(self, preferred: tuple[str, ...] = ("stage", "last_activity"),
                 prior: float = 20.0) -> None:
        self.preferred = preferred
        self.prior = prior  # pseudo-cases pulling a small group's rate to the overall one

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RateBaseline:
        y = np.asarray(y, dtype=float)
        rate = float(np.clip(y.mean() if len(y) else 0.5, 1e-4, 1 - 1e-4))
        self.intercept_ = float(np.log(rate / (1 - rate)))
        self.n_features_ = X.shape[1]
        column = _group_column(X, self.preferred)
        self.position_ = None if column is None else list(X.columns).index(column)
        if column is not None:
            keys = _keys(X, column)
            sums = pd.Series(y, index=X.index).groupby(keys).agg(["sum", "count"])
            smoothed = (sums["sum"] + self.prior * rate) / (sums["count"] + self.prior)
            self.groups_ = GroupStatBaseline((column,), "mean")
            self.groups_.fit(X, y)
            self.groups_.table_ = smoothed
            self.groups_.overall_ = rate
            if self.groups_.code_table_ is not None:
                levels = [*X[column].cat.categories, "(missing)"]
                self.groups_.code_table_ = np.array([float(smoothed.get(c, rate))
                                                     for c in levels])
        return self

    def terms(self, X: Matrix) -> np.ndarray:
        out = np.zeros((len(X), self.n_features_))
        if self.position_ is not None:
            p = np.clip(self.groups_.predict(X), 1e-4, 1 - 1e-4)
            out[:, self.position_] = np.log(p / (1 - p)) - self.intercept_
        return out

    def decision_function(self, X: Matrix) -> np.ndarray:
        return self.intercept_ + self.terms(X).sum(axis=1)

    def predict_proba(self, X: Matrix) -> np.ndarray:
        return expit(self.decision_function(X))


def stage_win_rate() -> GroupStatBaseline:
    """Historical win rate of the current sales stage (last activity if no stages)."""
    return GroupStatBaseline(("stage", "last_activity"), "mean")


def median_remaining_by_last_activity() -> GroupStatBaseline:
    return GroupStatBaseline(("last_activity",), "median")


class PaymentDelayBaseline:
    """The account's mean past delay when it has paid before, else the mean of its group.

    ``by``: the columns whose joint groups give the fallback mean (those present in the
    matrix; the overall mean for a group not seen in training). The baseline users
    have today is the terms' mean; the payment-delay model boosts from the same rule
    with ``by=("payment_terms_days", "region")``. It reads the feature frame or its
    float matrix (``models.matrix``), as the API scores from the matrix.
    """

    OWN = "account_mean_payment_delay_days"

    def __init__(self, by: tuple[str, ...] = ("payment_terms_days",)) -> None:
        self.by = by

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PaymentDelayBaseline:
        columns = list(X.columns)
        self.categories_ = [list(X[c].cat.categories) for c in columns
                            if isinstance(X[c].dtype, pd.CategoricalDtype)]
        self.key_positions_ = [columns.index(c) for c in self.by if c in columns]
        self.own_position_ = columns.index(self.OWN) if self.OWN in columns else None
        target = np.asarray(y, dtype=float)
        groups, inverse = np.unique(self._keys(as_matrix(X, self.categories_)), axis=0,
                                    return_inverse=True)
        means = np.bincount(inverse.ravel(), weights=target) / np.bincount(inverse.ravel())
        self.table_ = {tuple(g): float(m) for g, m in zip(groups.tolist(), means, strict=True)}
        self.overall_ = float(target.mean()) if len(target) else 0.0
        return self

    def _keys(self, M: np.ndarray) -> np.ndarray:
        """Group keys per row: the key columns' values (codes), missing as +inf."""
        return np.nan_to_num(M[:, self.key_positions_], nan=np.inf)

    def predict(self, X: Matrix) -> np.ndarray:
        M = as_matrix(X, self.categories_)
        keys = self._keys(M).tolist()
        fallback = np.fromiter((self.table_.get(tuple(k), self.overall_) for k in keys),
                               dtype=float, count=len(keys))
        if self.own_position_ is None:
            return fallback
        own = M[:, self.own_position_]
        return np.where(np.isnan(own), fallback, own)


class LogisticBaseline:
    """Logistic regression on the same features (one-hot categories, scaled numbers).

    Fitted with scikit-learn; scored from tables. The model is linear in its encoded
    columns and every encoded column (one-hot level, scaled number, missing indicator)
    belongs to one feature, so each feature adds a log-odds term that depends on its own
    value only: a lookup per category code, ``a + b * x`` per number (``x`` on a log scale
    for skewed ones, below; a constant when missing). The tables are read off the fitted
    encoder itself (``_compile``), so they equal scikit-learn's answers, and one row
    scores in microseconds instead of the milliseconds a ``ColumnTransformer`` takes.
    ``terms`` also gives the explanation.

    Numbers beyond the training range are held at its edge when scored: a linear term
    grows without bound, so an amount typed with three zeros too many would swing the
    win probability to certainty (trees just use their last split).

    A number that is never negative and strongly right-skewed on the training rows (deal
    amounts, durations, counts of earlier deals; ``SKEWED``) enters on a log scale,
    ``a + b * log1p(x)``: win odds move with a deal's size in proportion, not per dollar,
    and a linear term fitted on the bulk of such a column is driven by its tail. Counts
    of an account's or rep's earlier deals grow with the age of the log, so on new
    cases they lie beyond most training values; on a linear scale that drift moved the
    predicted win rate of new deals away from the truth, on a log scale much less.
    """

    #: sample skewness above which a non-negative number is taken on a log scale
    SKEWED = 1.0

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        self.categorical_ = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        self.numeric_ = [c for c in X.columns if c not in self.categorical_]
        self.columns_ = list(X.columns)
        self.categories_ = [list(X[c].cat.categories) for c in self.categorical_]
        numbers = X[self.numeric_].astype("float64")
        self.numeric_low_ = numbers.min().fillna(-np.inf).to_numpy()
        self.numeric_high_ = numbers.max().fillna(np.inf).to_numpy()
        skewed = (numbers.min() >= 0) & (numbers.skew() > self.SKEWED)
        self.log_columns_ = [c for c in self.numeric_ if bool(skewed[c])]
        encode = ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20,
                                  sparse_output=True), self.categorical_),
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True),
                                  StandardScaler()), self.numeric_),
        ])
        self.model_ = make_pipeline(encode, LogisticRegression(C=self.C, max_iter=2000))
        self.model_.fit(self._frame(X, scaled=True), np.asarray(y, dtype=int))
        self._compile()
        return self

    def _frame(self, X: pd.DataFrame, scaled: bool = False) -> pd.DataFrame:
        """What scikit-learn's pipeline reads: missing categories named; with ``scaled``,
        the skewed numbers on their log scale (the probe rows of ``_compile`` are
        already on it)."""
        out = X.copy()
        for c in self.categorical_:
            out[c] = out[c].astype("object").where(out[c].notna(), "(missing)")
        if scaled:
            for c in self.log_columns_:
                out[c] = np.log1p(out[c].astype("float64").clip(lower=0.0))
        return out

    def _compile(self) -> None:
        """Per-feature term tables, read by scoring probe rows with the fitted encoder.

        Probe row i holds category i of every categorical column (then missing) and, for
        every number, 0, 1 and missing in rows 0, 1 and 2; a feature's term in a row is the
        sum of its encoded columns' terms.
        """
        encode, logreg = self.model_[0], self.model_[-1]
        self.__dict__.pop("_term_layout", None)  # a refit's tables replace the last ones
        rows = max([3, *(len(c) + 1 for c in self.categories_)])
        probe: dict[str, object] = {}
        for name, cats in zip(self.categorical_, self.categories_, strict=True):
            values = [*cats, *([None] * (rows - len(cats)))]
            probe[name] = pd.Categorical(values, categories=cats)
        for name in self.numeric_:
            probe[name] = np.r_[0.0, 1.0, np.nan, np.zeros(rows - 3)]
        frame = pd.DataFrame(probe)[self.columns_]
        encoded = encode.transform(self._frame(frame))
        encoded = encoded.toarray() if hasattr(encoded, "toarray") else np.asarray(encoded)
        owners = _encoded_owners(encode, self.columns_)
        per_feature = np.zeros((rows, len(self.columns_)))
        np.add.at(per_feature.T, owners, (encoded * logreg.coef_[0]).T)
        position = {c: j for j, c in enumerate(self.columns_)}
        self.category_terms_ = [  # per categorical column: term per code, missing last
            per_feature[: len(cats) + 1, position[name]]
            for name, cats in zip(self.categorical_, self.categories_, strict=True)]
        numeric = [position[c] for c in self.numeric_]
        self.numeric_at_zero_ = per_feature[0, numeric]
        self.numeric_slope_ = per_feature[1, numeric] - per_feature[0, numeric]
        self.numeric_missing_ = per_feature[2, numeric]
        self.intercept_ = float(logreg.intercept_[0])

    def terms(self, X: Matrix) -> np.ndarray:
        """Each feature's log-odds term per row; the row sums plus ``intercept_`` are the
        model's log-odds. ``X``: the fitted columns, as a frame or as ``as_matrix``."""
        M = as_matrix(X, self.categories_)
        out = np.empty_like(M)
        layout = self._layout()
        if len(layout.categorical):  # every categorical column in one lookup
            codes = M[:, layout.categorical]
            if ((codes < 0) | (codes >= layout.missing)).any():  # NaN: neither
                raise ValueError("a category code outside the fitted categories: the "
                                 "features were not encoded for this model")
            picks = np.where(np.isnan(codes), layout.missing, codes).astype(np.int64
                                                                          ) + layout.offsets
            out[:, layout.categorical] = layout.terms[picks]
        numeric = layout.numeric
        values = np.clip(M[:, numeric], self.numeric_low_, self.numeric_high_)
        if len(layout.logged):
            values[:, layout.logged] = np.log1p(values[:, layout.logged])
        out[:, numeric] = np.where(np.isnan(values), self.numeric_missing_,
                                   self.numeric_at_zero_ + self.numeric_slope_ * values)
        return out

    def _layout(self) -> _TermLayout:
        """The category term tables end to end, built once (a request scores a row in a
        few numpy calls, not four per categorical column)."""
        layout = self.__dict__.get("_term_layout")  # not pickled: see __getstate__
        if layout is None:
            position = {c: j for j, c in enumerate(self.columns_)}
            sizes = np.array([len(t) for t in self.category_terms_], dtype=np.int64)
            layout = _TermLayout(
                categorical=np.array([position[c] for c in self.categorical_], dtype=np.int64),
                numeric=np.array([position[c] for c in self.numeric_], dtype=np.int64),
                terms=(np.concatenate(self.category_terms_) if len(sizes) else np.zeros(0)),
                offsets=np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64),
                missing=sizes - 1,
                logged=np.array([i for i, c in enumerate(self.numeric_)
                                 if c in set(getattr(self, "log_columns_", ()))],
                                dtype=np.int64))
            self._term_layout = layout
        return layout

    def __getstate__(self) -> dict[str, object]:
        """The fitted state without the derived layout: a saved model stays loadable by
        code that predates it, and the layout is rebuilt on first use."""
        return {k: v for k, v in self.__dict__.items() if k != "_term_layout"}

    def decision_function(self, X: Matrix) -> np.ndarray:
        return self.intercept_ + self.terms(X).sum(axis=1)

    def predict_proba(self, X: Matrix) -> np.ndarray:
        return expit(self.decision_function(X))


@dataclass(frozen=True)
class _TermLayout:
    """Where ``LogisticBaseline.terms`` reads: column positions and the joined tables."""

    categorical: np.ndarray  # positions of the categorical columns
    numeric: np.ndarray  # positions of the numeric columns
    terms: np.ndarray  # every categorical column's term table, end to end
    offsets: np.ndarray  # where each column's table starts in ``terms``
    missing: np.ndarray  # per column, the code of its missing term (its table's last)
    logged: np.ndarray  # positions among the numeric columns of those on a log scale


def _encoded_owners(encode: ColumnTransformer, columns: list[str]) -> np.ndarray:
    """For the fitted encoder: the input column of every encoded column."""
    position = {c: i for i, c in enumerate(columns)}
    owners: list[int] = []
    onehot = encode.named_transformers_["cat"]
    if hasattr(onehot, "categories_"):  # absent when there are no categorical columns
        for name, cats, rare in zip(onehot.feature_names_in_, onehot.categories_,
                                    onehot.infrequent_categories_, strict=True):
            width = len(cats) if rare is None else len(cats) - len(rare) + 1
            owners += [position[name]] * width
    imputer = encode.named_transformers_["num"][0]
    numeric = list(getattr(imputer, "feature_names_in_", []))
    indicator = getattr(imputer, "indicator_", None)
    flagged = [] if indicator is None else [numeric[i] for i in indicator.features_]
    owners += [position[c] for c in [*numeric, *flagged]]
    return np.asarray(owners, dtype=int)
