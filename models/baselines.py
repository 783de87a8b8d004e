"""Baselines: what users have today, on the same split, so a model's gain is honest.

- win/loss: the historical win rate of the prefix's current stage (what CRM stage
  probabilities give) and a logistic regression on the same features;
- remaining time: the median remaining time by last activity;
- payment delay: the account's mean past delay, else the mean for the payment terms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def _group_column(X: pd.DataFrame, preferred: tuple[str, ...]) -> str | None:
    return next((c for c in preferred if c in X.columns), None)


def _keys(X: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series("all", index=X.index)
    return X[column].astype("object").fillna("(missing)")


class GroupStatBaseline:
    """A statistic of the target per group of one column, the overall one for new groups."""

    def __init__(self, preferred: tuple[str, ...], stat: str = "mean") -> None:
        self.preferred = preferred
        self.stat = stat

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> GroupStatBaseline:
        self.column_ = _group_column(X, self.preferred)
        target = pd.Series(np.asarray(y, dtype=float), index=X.index)
        self.table_ = target.groupby(_keys(X, self.column_)).agg(self.stat)
        self.overall_ = float(target.agg(self.stat))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        values = _keys(X, self.column_).map(self.table_)
        return values.fillna(self.overall_).to_numpy(dtype=float)


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
    with ``by=("payment_terms_days", "region")``.
    """

    def __init__(self, by: tuple[str, ...] = ("payment_terms_days",)) -> None:
        self.by = by

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PaymentDelayBaseline:
        self.columns_ = [c for c in self.by if c in X.columns]
        target = pd.Series(np.asarray(y, dtype=float), index=X.index)
        self.table_ = target.groupby(self._keys(X)).mean()
        self.overall_ = float(target.mean()) if len(target) else 0.0
        return self

    def _keys(self, X: pd.DataFrame) -> pd.Series:
        if not self.columns_:
            return pd.Series("all", index=X.index)
        parts = [_keys(X, c).astype(str) for c in self.columns_]
        return parts[0].str.cat(parts[1:], sep="\x1f") if len(parts) > 1 else parts[0]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        fallback = self._keys(X).map(self.table_).fillna(self.overall_).to_numpy(dtype=float)
        if "account_mean_payment_delay_days" not in X.columns:
            return fallback
        own = X["account_mean_payment_delay_days"].to_numpy(dtype=float)
        return np.where(np.isnan(own), fallback, own)


class LogisticBaseline:
    """Logistic regression on the same features (one-hot categories, scaled numbers)."""

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        self.categorical_ = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        self.numeric_ = [c for c in X.columns if c not in self.categorical_]
        encode = ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20,
                                  sparse_output=True), self.categorical_),
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True),
                                  StandardScaler()), self.numeric_),
        ])
        self.model_ = make_pipeline(encode, LogisticRegression(C=self.C, max_iter=2000))
        self.model_.fit(self._frame(X), np.asarray(y, dtype=int))
        return self

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for c in self.categorical_:
            out[c] = out[c].astype("object").where(out[c].notna(), "(missing)")
        return out

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._frame(X))[:, 1]
