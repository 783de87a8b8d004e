"""Small inputs (one running case's few rows): the paths that answer them in Python.

pandas and pyarrow pay a fixed cost per call (index building, kernels, dtype checks)
that dominates when a table holds a handful of rows, as one running case does; plain
Python over the rows answers those in microseconds. Each function here gives exactly
what the general (vectorised) path gives for the same input, and
``tests/features/test_small.py`` checks each against it with generated inputs. The
callers choose by size (``SMALL_FRAME_ROWS``); what each saves is measured in
docs/performance.md, and a path whose saving cannot be measured does not belong here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

#: up to this many rows a table is small: text is held as Python strings (see
#: ``features.schema.text_dtype``) and the functions below are used
SMALL_FRAME_ROWS: Final = 4096
#: up to this many queries, a ``Lookup`` answers from its dict
FEW_QUERIES: Final = 512
#: up to this many facts, running sums are taken in Python
FEW_FACTS: Final = 256


def is_missing(value: object) -> bool:
    """One cell missing (None, NaN, NA, NaT), without pandas' per-call cost."""
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and value != value)


def stripped_text(values: list[object]) -> list[str | None]:
    """Cells as text without surrounding blanks; missing and empty cells as None."""
    return [None if pd.isna(v) else str(v).strip() or None for v in values]


def matches(values: list[object], pattern: re.Pattern[str]) -> np.ndarray:
    """Whether each text cell contains ``pattern`` (missing: False)."""
    return np.fromiter((isinstance(v, str) and pattern.search(v) is not None for v in values),
                       dtype=bool, count=len(values))


def first_groups(values: list[object], pattern: str) -> pd.api.extensions.ExtensionArray:
    """The first capture group of ``pattern`` in each text cell (None where none), as
    ``Series.str.extract(pattern, expand=False)`` gives it; Python's ``re`` is the engine
    pandas uses there too."""
    compiled = re.compile(pattern)
    found = {v: compiled.search(v) for v in set(values) if isinstance(v, str)}
    return pd.array([None if m is None else m.group(1) for m in map(found.get, values)],
                    dtype=object)


def renamed(values: list[object], names: dict[str, str]) -> list[object]:
    """Each value's new name where ``names`` has one; missing values stay missing."""
    return [v if is_missing(v) else names.get(v, v) for v in values]


def not_in(values: list[object], known: set[str]) -> np.ndarray:
    """Whether each value is given and not among ``known``."""
    return np.fromiter((not is_missing(v) and v not in known for v in values), dtype=bool,
                       count=len(values))


def any_repeated(columns: list[list[object]]) -> bool:
    """Whether two rows agree on every column (Python's equality, the one
    ``duplicated`` uses on object cells: 1 and 1.0 agree)."""
    rows = list(zip(*columns, strict=True))
    return len(set(rows)) < len(rows)


def visibly_sorted(cases: list[object], micros: list[int], ties: list[object]) -> bool:
    """Whether rows run by case, then time, then tie-break; False whenever unsure
    (missing or mixed values: the caller's sort then decides)."""
    try:
        for i in range(1, len(micros)):
            if cases[i - 1] != cases[i]:
                if not cases[i - 1] < cases[i]:
                    return False
            elif micros[i - 1] > micros[i] or (micros[i - 1] == micros[i]
                                               and not ties[i - 1] <= ties[i]):
                return False
    except TypeError:
        return False
    return True


def picked(codes: np.ndarray, values: Sequence[object]) -> np.ndarray:
    """``values[code]`` per code as objects, NaN for code -1, picking the few codes
    instead of copying every category."""
    out = np.empty(len(codes), dtype=object)
    out[:] = [values[c] if c >= 0 else np.nan for c in codes.tolist()]
    return out


def positions(table: dict[object, int], queries: np.ndarray) -> np.ndarray:
    """Each query's position in ``table`` (-1 where absent or missing)."""
    get = table.get
    return np.fromiter((-1 if is_missing(q) else get(q, -1) for q in queries),
                       dtype=np.int64, count=len(queries))


def running_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` (rows) restarting in every group, with the
    compensated (Kahan) summation pandas' ``groupby(...).cumsum()`` uses, bit for bit."""
    out = np.empty_like(values)
    totals: dict[object, list[float]] = {}
    errors: dict[object, list[float]] = {}
    for i, group in enumerate(groups.tolist()):
        total = totals.setdefault(group, [0.0] * values.shape[1])
        error = errors.setdefault(group, [0.0] * values.shape[1])
        for j, value in enumerate(values[i].tolist()):
            y = value - error[j]
            t = total[j] + y
            error[j] = t - total[j] - y
            total[j] = t
            out[i, j] = t
    return out
