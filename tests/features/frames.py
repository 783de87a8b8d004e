"""Tiny canonical logs for tests: every canonical column, in its canonical dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import CANONICAL_KINDS, ROW_COLUMN, TIMESTAMP_DTYPE


def canonical_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Given columns converted, missing canonical columns added empty, source rows kept."""
    out: dict[str, pd.Series] = {}
    for column, kind in CANONICAL_KINDS.items():
        values = raw[column] if column in raw else pd.Series([None] * len(raw), dtype=object)
        if kind == "time":
            out[column] = pd.to_datetime(values, utc=True, format="ISO8601").astype(
                TIMESTAMP_DTYPE)
        elif kind == "number":
            out[column] = pd.to_numeric(values.astype(object)).astype("float64")
        else:
            out[column] = pd.Series(values.astype(object).where(values.notna(), None),
                                    dtype="str")
    rows = raw[ROW_COLUMN] if ROW_COLUMN in raw else np.arange(1, len(raw) + 1)
    out[ROW_COLUMN] = pd.Series(np.asarray(rows), dtype="int64")
    return pd.DataFrame(out)
