"""Prefixes: one row per (case, k), the unit every feature and label is computed for.

A prefix ends at an event, so the sorted event table *is* the prefix table: row i of
case c is the prefix made of c's first k events. Every encoder computes cumulative
quantities over that table (groupby cumsum/cummax/ffill), which makes each feature
depend only on events at or before the prefix end by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.extensions import ExtensionArray

from features import small
from features.schema import ROW_COLUMN
from features.small import FEW_QUERIES, SMALL_FRAME_ROWS

KEY_COLUMNS = ("case_id", "prefix_len", "prefix_end")
#: a missing value's sort key: after every other
_MISSING_KEY = np.iinfo(np.int64).max


#: a table's columns as arrays, by name (a frame's ``.array``s, or numpy arrays)
Columns = Mapping[str, ExtensionArray | np.ndarray]


def prepare_events(events: pd.DataFrame | Columns) -> pd.DataFrame:
    """A sorted copy with prefix keys; the caller's frame is never modified.

    Sorting by case, time and the row's place in the file makes the result independent
    of the input row order; without a source row, the activity name breaks ties so that
    a shuffled frame still gives one answer.
    """
    return pd.DataFrame(_prepared_columns(events), copy=False)


def prepare_rows(events: pd.DataFrame | Columns, each_case_alone: bool = False) -> EventRows:
    """``EventRows`` of ``prepare_events(events)``, without building its frame unless an
    encoder asks for it. ``events`` may be a log's columns as arrays (``EventLog.columns``):
    a small log then reads its events without any frame (building one, or taking each
    column out of one, would be a large share of scoring one case)."""
    return EventRows(_prepared_columns(events), each_case_alone)


def _prepared_columns(events: pd.DataFrame | Columns) -> dict[str, ExtensionArray | np.ndarray]:
    given = table_columns(events)
    tie_break = ROW_COLUMN if ROW_COLUMN in given else "activity"
    order, case_key = _case_time_order_and_key(given, tie_break)
    ordered = given if order is None else {name: values.take(order)
                                           for name, values in given.items()}
    if case_key is None or (len(case_key) and case_key.max() == _MISSING_KEY):
        start_row = case_starts(ordered["case_id"])
    else:  # the sort's integer key of the case ids, not the ids themselves
        start_row = case_starts(case_key if order is None else case_key[order])
    times = ordered["timestamp"]
    ordered.update(prefix_len=(np.arange(len(times)) - start_row + 1).astype("int64"),
                   prefix_end=times, case_start=times[start_row])
    return ordered


def table_columns(events: pd.DataFrame | Columns) -> dict[str, ExtensionArray | np.ndarray]:
    """A frame's columns as its arrays (no copies), or a copy of the mapping of arrays."""
    if isinstance(events, pd.DataFrame):
        return {name: events[name].array for name in events.columns}
    return dict(events)


def in_case_time_order(frame: pd.DataFrame, tie_break: str) -> pd.DataFrame:
    """Rows sorted by case, time and ``tie_break`` (stable), with a fresh 0..n-1 index.

    One numpy lexsort over integer keys; a frame already in order is returned as it is
    (one running case usually is), where ``sort_values`` pays its fixed cost even on ten
    rows.
    """
    order = _case_time_order({c: frame[c] for c in ("case_id", "timestamp", tie_break)},
                             tie_break)
    if order is not None:
        frame = frame.take(order)
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


def columns_in_case_time_order(columns: Columns, tie_break: str
                               ) -> dict[str, ExtensionArray | np.ndarray]:
    """``in_case_time_order`` of a table given as its columns; columns already in order
    are returned as they are (a new dict of the same arrays)."""
    order = _case_time_order(columns, tie_break)
    if order is None:
        return dict(columns)
    return {name: values.take(order) for name, values in columns.items()}


def _case_time_order(columns: Columns | dict[str, pd.Series], tie_break: str
                     ) -> np.ndarray | None:
    """The order that sorts the rows by case, time and ``tie_break``; None when they are
    in that order already."""
    return _case_time_order_and_key(columns, tie_break)[0]


def _case_time_order_and_key(columns: Columns | dict[str, pd.Series], tie_break: str
                             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``_case_time_order``, and the case ids' sort key in the given row order when it
    was computed (a small table already in order needs none).

    A log is usually written in this order already: one comparison of each row's keys
    with the next row's says so, where the lexsort would cost several times more; the
    lexsort decides whenever that comparison cannot (a key missing, rows out of order).
    """
    cases, times, ties = (columns[c] for c in ("case_id", "timestamp", tie_break))
    if _visibly_in_order(cases, times, ties):
        return None, None
    # case ids ascending: the time and the tie-break decide within each case
    same_case = _same_as_next_if_ascending(cases)
    if same_case is not None and _keys_in_order(
            [sort_key(columns[c]) for c in ("timestamp", tie_break)], same_case):
        return None, np.r_[0, np.cumsum(~same_case)]  # a key that runs per case
    keys = [sort_key(columns[c]) for c in ("case_id", "timestamp", tie_break)]
    if _keys_in_order(keys):
        return None, keys[0]
    order = np.lexsort(keys[::-1])
    return (None if (order == np.arange(len(order))).all() else order), keys[0]


def _same_as_next_if_ascending(column: pd.Series | ExtensionArray | np.ndarray
                               ) -> np.ndarray | None:
    """For pyarrow text with no missing value that never decreases from a row to the
    next: whether each row's value equals the next row's. None otherwise (other
    storage, a missing value, or out of order). pyarrow compares UTF-8 bytes, which is
    Python's order of the same strings, and ``sort_key``'s."""
    array = _array_of(column)
    dtype = getattr(array, "dtype", None)
    if (len(array) < 2 or not isinstance(dtype, pd.StringDtype) or dtype.storage != "pyarrow"
            or array.isna().any()):
        return None
    text = pa.array(array)
    before, after = text[:-1], text[1:]
    if not pc.all(pc.less_equal(before, after)).as_py():
        return None
    return pc.equal(before, after).to_numpy(zero_copy_only=False)


def _keys_in_order(keys: list[np.ndarray], equal_before: np.ndarray | None = None) -> bool:
    """Whether every row's keys are lexicographically at most the next row's (a stable
    sort would then leave the rows where they are). False when a float key is NaN.
    ``equal_before``: which rows equal the next one on keys compared already."""
    if any(key.dtype.kind == "f" and np.isnan(key).any() for key in keys):
        return False
    later_equal = (np.ones(max(len(keys[0]) - 1, 0), dtype=bool) if equal_before is None
                   else equal_before.copy())  # rows equal so far
    for key in keys:
        before, after = key[:-1], key[1:]
        if (later_equal & (after < before)).any():
            return False
        later_equal &= after == before
    return True


def _visibly_in_order(cases: pd.Series | ExtensionArray | np.ndarray,
                      times: pd.Series | ExtensionArray,
                      ties: pd.Series | ExtensionArray | np.ndarray) -> bool:
    """Whether a small table's rows already run by case, time and tie-break, checked in
    Python (``features.small``). False whenever unsure (missing values, mixed types, a
    large table): the lexsort then decides."""
    if len(times) > SMALL_FRAME_ROWS or not isinstance(times.dtype, pd.DatetimeTZDtype):
        return False
    at = epoch_micros(times).tolist()
    if len(at) and min(at) == np.iinfo(np.int64).min:  # NaT sorts last, not first
        return False
    return small.visibly_sorted(cases.tolist(), at, ties.tolist())


def sort_key(column: pd.Series | ExtensionArray | np.ndarray) -> np.ndarray:
    """Integers (or floats) that sort as ``sort_values`` sorts the column, missing last."""
    if not isinstance(column, pd.Series):
        column = pd.Series(column, copy=False)
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
            column.dtype):
        key = column.array.asi8.copy()
        key[column.isna().to_numpy()] = _MISSING_KEY
        return key
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    # text as pandas holds it: pyarrow ranks its distinct values in UTF-8 byte order,
    # which is Python's order of the same strings, without a Python object per row
    codes, _ = pd.factorize(column.array if pd.api.types.is_string_dtype(column.dtype)
                            else column.to_numpy(), sort=True)
    return np.where(codes < 0, _MISSING_KEY, codes)


def first_row_per_group(groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each group's first row among ``rows``, taken in the order given (reverse ``rows``
    for the last): one sort instead of a groupby."""
    _, first = np.unique(groups[rows], return_index=True)
    return rows[first]


def case_starts(case_ids: pd.Series | ExtensionArray | np.ndarray) -> np.ndarray:
    """Row index of each row's case start (rows are sorted by case)."""
    codes = np.asarray(case_ids)
    new_case = np.r_[True, codes[1:] != codes[:-1]]
    return np.maximum.accumulate(np.where(new_case, np.arange(len(codes)), 0))


class CaseRows:
    """Cumulative operations within cases, in numpy, over rows sorted by case and time.

    Every prefix feature is a running quantity of its case (last known value, running
    max, count so far). pandas' groupby has a fixed cost per call whatever the size,
    which dominated scoring one case; these operations do not, and stay
    vectorised over a million rows. A row's result depends only on the rows of its
    own case at or before it, also in floating point: scans combine a row with the row
    ``step`` places before it only inside the case, so the order of additions depends
    on the position within the case alone (a case scored alone gets the same bits).
    """

    def __init__(self, prefix_len: np.ndarray) -> None:
        self.k = np.asarray(prefix_len, dtype=np.int64) - 1  # place within the case
        self.start = np.arange(len(self.k)) - self.k  # row of the case's first event
        self.first_rows = np.flatnonzero(self.k == 0)
        self.longest = int(self.k.max()) + 1 if len(self.k) else 0
        self._case_number: np.ndarray | None = None
        self._next_case: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.k)

    def case_number(self) -> np.ndarray:
        """0, 1, 2 ... per case, in row order (computed once, read-only)."""
        if self._case_number is None:
            self._case_number = np.cumsum(self.k == 0) - 1
            self._case_number.flags.writeable = False
        return self._case_number

    def next_case(self) -> np.ndarray:
        """Per row, the row where the next case starts (the row count after the last
        case; computed once, read-only)."""
        if self._next_case is None:
            ends = np.append(self.first_rows[1:], len(self.k))
            self._next_case = ends[self.case_number()]
            self._next_case.flags.writeable = False
        return self._next_case

    def running_counts(self, codes: np.ndarray, width: int) -> np.ndarray:
        """Per row and per code 0 .. width-1, how many rows of its case so far carry that
        code (codes outside that range, such as -1 for missing, are counted nowhere).

        What a cumsum within cases of a one-hot matrix gives, without a pass over the
        matrix per code to build it: a column-major matrix of zeros gets +1 at each
        row's code and -1 where its case's counts must stop (at the next case's first
        row, in the row's code), then one cumsum per column counts within every case at
        once.
        """
        n = len(codes)
        out = np.zeros((n, width), dtype=np.int64, order="F")
        flat = out.reshape(-1, order="F")  # a view: column j is flat[j * n:(j + 1) * n]
        listed = np.flatnonzero((codes >= 0) & (codes < width))
        column_at = codes[listed] * n
        flat[listed + column_at] = 1  # one code per row: no position is hit twice
        stops = self.next_case()[listed]
        inside = stops < n  # the last case's counts run to the end
        np.subtract.at(flat, stops[inside] + column_at[inside], 1)
        for code in range(width):
            column = out[:, code]  # a contiguous view
            np.cumsum(column, out=column)
        return out

    def shift(self, values: np.ndarray, fill: object = np.nan) -> np.ndarray:
        """The previous row's value within the case; ``fill`` on a case's first row."""
        out = np.empty(len(values), dtype=np.result_type(values.dtype, np.asarray(fill)))
        out[1:] = values[:-1]
        out[self.k == 0] = fill
        return out

    def ffill(self, values: np.ndarray) -> np.ndarray:
        """The latest non-missing value at or before each row; NaN before the first."""
        present = ~np.isnan(values) if values.dtype.kind == "f" else ~pd.isna(values)
        last = np.where(present, np.arange(len(values)), -1)
        np.maximum.accumulate(last, out=last)
        dtype = object if values.dtype == object else np.result_type(values.dtype, np.float64)
        out = values.take(last).astype(dtype, copy=False)  # row -1 (none yet): masked
        out[last < self.start] = np.nan
        return out

    def ffill_codes(self, codes: np.ndarray) -> np.ndarray:
        """``ffill`` of integer codes (-1: missing): the latest code >= 0 at or before
        each row in its case, -1 before the first."""
        last = np.maximum.accumulate(np.where(codes >= 0, np.arange(len(codes)), -1))
        return np.where(last >= self.start, codes[last], -1)

    def scan(self, op: np.ufunc, values: np.ndarray) -> np.ndarray:
        """Inclusive running ``op`` (np.add, np.fmax, np.fmin) restarting at each case.

        With fmax/fmin missing values are skipped (the running value carries over them).
        """
        out = np.array(values, copy=True)
        step = 1
        while step < self.longest:
            rows = np.flatnonzero(self.k >= step)
            out[rows] = op(out[rows - step], out[rows])  # reads the previous pass only
            step *= 2
        return out

    def count(self, flags: np.ndarray) -> np.ndarray:
        """How many rows so far in the case have the flag (exact integer counts): at each
        case's first row minus the flags of the case before, then one cumsum."""
        out = np.array(flags, dtype=np.int64)
        if len(self.first_rows) > 1:
            per_case = np.add.reduceat(out, self.first_rows)
            out[self.first_rows[1:]] -= per_case[:-1]
        np.cumsum(out, out=out)
        return out

    def first_where(self, present: np.ndarray) -> np.ndarray:
        """Per case, its first row where ``present`` holds, or -1."""
        n = len(present)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        first = np.minimum.reduceat(np.where(present, np.arange(n), n), self.first_rows)
        return np.where(first < n, first, -1)


def _long_text(column: pd.Series | ExtensionArray | np.ndarray) -> bool:
    """Text that ``_as_values`` turns into objects through its codes."""
    return (len(column) > SMALL_FRAME_ROWS and not isinstance(column, np.ndarray)
            and pd.api.types.is_string_dtype(column.dtype))


def _array_of(column: pd.Series | ExtensionArray | np.ndarray) -> ExtensionArray | np.ndarray:
    return column.array if isinstance(column, pd.Series) else column


def _empty(column: pd.Series | ExtensionArray | np.ndarray) -> bool:
    """No value at all (a role the log does not fill)."""
    return not pd.notna(_array_of(column)).any()


def _factorize(column: pd.Series | ExtensionArray | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of the column's values (``_as_values``), distinct values as
    objects; a column without values is not hashed, long text is coded as pandas holds
    it (the objects ``_as_values`` makes are not needed for that)."""
    if _empty(column):
        return np.full(len(column), -1, dtype=np.intp), np.empty(0, dtype=object)
    codes, uniques = pd.factorize(column if _long_text(column) else _as_values(column))
    return codes, np.asarray(uniques, dtype=object)


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Whether each row holds the first occurrence of its key: what ``np.unique``'s
    ``return_index`` marks, from a hash table instead of a sort (``pd.factorize`` numbers
    keys in order of first occurrence, so a first occurrence raises the running maximum)."""
    codes, _ = pd.factorize(keys)
    out = np.ones(len(codes), dtype=bool)
    if len(codes) > 1:
        running = np.maximum.accumulate(codes)
        np.greater(running[1:], running[:-1], out=out[1:])
    return out


def _as_values(column: pd.Series | ExtensionArray | np.ndarray) -> np.ndarray:
    """A column (or its array) as numpy; long text columns as objects shared per
    distinct value.

    ``to_numpy`` on pyarrow text makes one Python string per row;
    factorizing first makes one per distinct value and an array of references to them.
    """
    if len(column) <= SMALL_FRAME_ROWS or not pd.api.types.is_string_dtype(column.dtype):
        values = column if isinstance(column, np.ndarray) else column.to_numpy()
        # read-only: it may be the caller's own column (the caller's frame is never
        # modified, and no encoder may write into what another one reads)
        values = values.view()
        values.flags.writeable = False
        return values
    codes, uniques = pd.factorize(column)
    return decoded(codes, uniques)


def decoded(codes: np.ndarray, values: Sequence[object]) -> np.ndarray:
    """``values[code]`` per code as objects, NaN where the code is -1 (missing)."""
    if len(codes) < len(values) // 8:  # a few codes: pick them, not copy every category
        return small.picked(codes, values)
    table = np.append(np.asarray(values, dtype=object), np.nan)
    return table[codes]  # code -1 picks the NaN at the end


class Lookup:
    """Positions of known values (-1 where absent or missing).

    A dict answers a handful of queries (``features.small``); pandas' ``get_indexer``
    has a fixed cost per call that would dominate scoring one case, but is the
    vectorised answer for a training log.
    """

    def __init__(self, values: Sequence[object]) -> None:
        self.values = np.asarray(list(values), dtype=object)
        self._positions: dict[object, int] | None = None
        self._index: pd.Index | None = None
        self._at: np.ndarray | None = None  # the position of each index entry

    def __len__(self) -> int:
        return len(self.values)

    def _table(self) -> dict[object, int]:
        """Value -> position; a value listed twice keeps its last position (as a dict
        built from the list does, which the pandas path follows too)."""
        if self._positions is None:
            self._positions = {v: i for i, v in enumerate(self.values.tolist())}
        return self._positions

    def positions(self, queries: np.ndarray) -> np.ndarray:
        table = self._table()
        if len(queries) <= FEW_QUERIES:
            return small.positions(table, queries)
        if self._at is None:
            self._index = pd.Index(list(table), dtype=object)  # distinct values
            self._at = np.fromiter(table.values(), dtype=np.int64, count=len(table))
        # an object Index as is: from a plain array pandas would first infer a text
        # dtype and convert every query to it and back, several times the lookup itself
        found = self._index.get_indexer(pd.Index(np.asarray(queries, dtype=object),
                                                 dtype=object, copy=False))
        out = np.full(len(found), -1, dtype=np.int64)
        hit = found >= 0  # a missing query finds nothing unless a listed value is missing
        if self._index.hasnans:
            hit &= ~pd.isna(queries)
        out[hit] = self._at[found[hit]]
        return out


class EventRows:
    """The prepared table's columns as numpy arrays, each converted once per transform,
    with the case positions every encoder needs.

    ``each_case_alone``: cross-case features let a case see the fitted history and
    itself, never the other cases given with it, so each case's features are those it
    gets when encoded alone (whoever scores several cases in one pass decides).
    """

    def __init__(self, prepared: pd.DataFrame | Columns, each_case_alone: bool = False
                 ) -> None:
        """``prepared``: the prepared table as a frame, or as its columns (a frame is then
        built only if an encoder asks for one)."""
        frame = isinstance(prepared, pd.DataFrame)
        self._frame: pd.DataFrame | None = prepared if frame else None
        self._arrays: Columns = {} if frame else prepared
        self.each_case_alone = each_case_alone
        self.cases = CaseRows(np.asarray(self._source("prefix_len")))
        self.sec = seconds(self._source("timestamp"))
        self._columns: dict[str, np.ndarray] = {}
        self._factorized: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def head(self, positions: np.ndarray) -> EventRows:
        """The rows at ``positions`` (ascending), which must be the first rows of each
        case they hold (what ``max_prefix_len`` keeps). A running quantity of a case is
        then the same at these rows as in the whole table, so an encoder that reads only
        a row's own case up to the row can encode these rows alone, and never computes
        the features of the rows left out. Columns are taken when first read, and text
        is coded from the whole column without taking its values (``factorized``); the
        new rows hold no reference to this object, so its caches can go before them."""
        sources = (dict(self._arrays) if self._frame is None
                   else {c: self._frame[c] for c in self._frame.columns})
        return EventRows(_TakenColumns(sources, positions), self.each_case_alone)

    @property
    def frame(self) -> pd.DataFrame:
        """The prepared table as a frame (built on first use: for one case, no encoder
        needs one unless a case has a payment)."""
        if self._frame is None:
            self._frame = pd.DataFrame(dict(self._arrays), copy=False)  # a plain dict
        return self._frame

    def _source(self, column: str) -> pd.Series | ExtensionArray | np.ndarray:
        found = self._arrays.get(column)
        return self.frame[column] if found is None else found

    def __len__(self) -> int:
        return len(self.cases)

    def __contains__(self, column: str) -> bool:
        return column in (self._arrays if self._frame is None else self._frame.columns)

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._columns:
            source = self._source(column)
            if _long_text(source):  # what _as_values gives, from the codes kept below
                self._columns[column] = decoded(*self.factorized(column))
            else:
                self._columns[column] = _as_values(source)
        return self._columns[column]

    def factorized(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``pd.factorize(rows[column])``: codes (-1 where missing) and the distinct values
        as objects, computed once per transform (several encoders code the same column).

        A long text column is factorized as pandas holds it, and ``rows[column]`` is
        then built from these codes (see ``_as_values``): the objects are not hashed
        again, and not made at all when no encoder asks for them. A column with no value
        (a mapped role the log does not fill) is not hashed either.
        """
        if column not in self._factorized:
            found = None
            if column not in self._columns and isinstance(self._arrays, _TakenColumns):
                found = self._arrays.factorized(column)  # some rows of a whole column
            if found is None:
                source = self._source(column)
                if column not in self._columns and (_long_text(source) or _empty(source)):
                    found = _factorize(source)
                else:
                    codes, uniques = pd.factorize(self[column])
                    found = codes, np.asarray(uniques, dtype=object)
            self._factorized[column] = found
        return self._factorized[column]

    def changes(self, column: str) -> np.ndarray:
        """Rows whose value differs from the last value of their case known before them
        (missing values are skipped, a case's first known value is no change)."""
        codes, _ = self.factorized(column)
        before = self.cases.shift(self.cases.ffill_codes(codes), fill=-1)
        return (codes >= 0) & (before >= 0) & (codes != before)

    def filled(self, column: str) -> bool:
        """Whether the column has any value that is not missing."""
        if column in self._factorized:
            return bool((self._factorized[column][0] >= 0).any())
        return bool(pd.notna(self.array(column)).any())

    def last_known_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``last_known(column)`` as ``factorized(column)``'s codes (-1: none known yet)
        and the distinct values: what is looked up per distinct value, not per row."""
        key = f"last known codes {column}"
        if key not in self._factorized:
            codes, uniques = self.factorized(column)
            self._factorized[key] = (self.cases.ffill_codes(codes), uniques)
        return self._factorized[key]

    def array(self, column: str) -> ExtensionArray | np.ndarray:
        """The column as pandas holds it (times keep their dtype; ``rows[c]`` is numpy)."""
        found = self._source(column)
        return found.array if isinstance(found, pd.Series) else found

    def last_known(self, column: str) -> np.ndarray:
        """The column's latest non-missing value at or before each row (NaN before the
        first), computed once: several encoders read the stage, rep or region so."""
        key = f"last known {column}"
        if key not in self._columns:
            self._columns[key] = self.cases.ffill(self[column])
        return self._columns[key]

    def floats(self, column: str) -> np.ndarray:
        return np.asarray(self[column], dtype="float64")

    def micros(self) -> np.ndarray:
        """UTC timestamps as datetime64[us] (sub-second precision kept)."""
        return epoch_micros(self._source("timestamp")).view("datetime64[us]")


class _TakenColumns(Mapping[str, "ExtensionArray | np.ndarray"]):
    """Some rows of a table's columns, each taken on first use (``EventRows.head``); a
    whole column is let go once its rows are taken."""

    def __init__(self, sources: dict[str, pd.Series | ExtensionArray | np.ndarray],
                 positions: np.ndarray) -> None:
        self._sources = sources
        self._names = list(sources)
        self._positions = positions
        self._taken: dict[str, ExtensionArray | np.ndarray] = {}

    def __getitem__(self, column: str) -> ExtensionArray | np.ndarray:
        if column not in self._taken:
            if column not in self._sources:
                raise KeyError(column)
            self._taken[column] = _array_of(self._sources.pop(column)).take(self._positions)
        return self._taken[column]

    def __contains__(self, column: object) -> bool:  # without taking the column
        return column in self._taken or column in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def factorized(self, column: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The column's codes at the taken rows and its distinct values, coded over the
        whole column (no copy of its values); None once the column is taken."""
        source = self._sources.get(column)
        if source is None:
            return None
        codes, uniques = _factorize(source)
        return codes[self._positions], uniques


def seconds(ts: pd.Series | ExtensionArray) -> np.ndarray:
    """UTC timestamps as int64 seconds since the epoch (floored), for searchsorted and
    arithmetic; NaT stays numpy's NaT integer."""
    return _epoch_ints(ts, 1)


def epoch_micros(ts: pd.Series | pd.api.extensions.ExtensionArray) -> np.ndarray:
    """tz-aware timestamps as int64 microseconds since the epoch; NaT as numpy's NaT."""
    return _epoch_ints(ts, 10**6)


def _epoch_ints(ts: pd.Series, per_second: int) -> np.ndarray:
    """tz-aware timestamps as integer units since the epoch, read off the stored ints
    (the tz conversions this replaces had a fixed cost per call that showed on one
    case)."""
    values = ts.array if isinstance(ts, pd.Series) else ts
    unit = getattr(ts.dtype, "unit", None) or np.datetime_data(ts.dtype)[0]
    unit_per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    raw = values.asi8
    nat = raw == np.iinfo(np.int64).min
    if unit_per_second >= per_second:
        out = np.floor_divide(raw, unit_per_second // per_second)
    else:
        out = raw * (per_second // unit_per_second)
    out[nat] = np.iinfo(np.int64).min
    return out


def days_between(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    return (seconds(later) - seconds(earlier)) / 86400.0


def select_prefixes(
    prefix_len: pd.Series | np.ndarray, max_prefix_len: int | None, thin_after: int | None,
    thin_step: int,
) -> np.ndarray:
    """Boolean mask of the prefix rows to keep.

    Long cases would dominate training with near-identical prefixes; ``thin_after`` keeps
    every ``thin_step``-th prefix beyond that length. Selection depends on k alone, so a
    prefix's presence never depends on events after it.
    """
    k = np.asarray(prefix_len)
    keep = np.ones(len(k), dtype=bool)
    if max_prefix_len is not None:
        keep &= k <= max_prefix_len
    if thin_after is not None and thin_step > 1:
        keep &= (k <= thin_after) | ((k - thin_after) % thin_step == 0)
    return keep
