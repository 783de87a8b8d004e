"""Feature frames as one float matrix: category codes, NaN for missing.

LightGBM turns a pandas frame into exactly this matrix on every ``predict`` call
(categories aligned to the training ones, codes as floats, -1 as NaN). Converting once
per request and handing every booster and the logistic base the same ndarray removes
about ten such conversions from one API request; predictions are bit-for-bit the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

Matrix = pd.DataFrame | np.ndarray


def as_matrix(X: Matrix, categories: Sequence[Sequence[object]] | None = None) -> np.ndarray:
    """The float matrix LightGBM would build from ``X``.

    ``categories``: the training categories of X's categorical columns, in column order
    (LightGBM's ``pandas_categorical``); a column whose categories differ is aligned to
    them first, as LightGBM does. An ndarray passes through unchanged.
    """
    if isinstance(X, np.ndarray):
        return np.asarray(X, dtype="float64")
    out = np.empty(X.shape, dtype="float64")
    positions = categorical_positions(X)
    numeric = np.setdiff1d(np.arange(X.shape[1]), positions)
    if len(numeric):  # one conversion for all numbers, not a Series per column
        out[:, numeric] = X.iloc[:, numeric].to_numpy(dtype="float64", na_value=np.nan)
    for i, j in enumerate(positions):
        column = X.iloc[:, j]
        if categories is not None and list(column.cat.categories) != list(categories[i]):
            column = column.cat.set_categories(list(categories[i]))
        codes = column.cat.codes.to_numpy()
        out[:, j] = np.where(codes < 0, np.nan, codes)
    return out


def categorical_positions(X: pd.DataFrame) -> list[int]:
    return [j for j, dtype in enumerate(X.dtypes) if isinstance(dtype, pd.CategoricalDtype)]
