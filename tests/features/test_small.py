"""Each small-input path of ``features.small`` gives what the general path gives.

Every test runs the caller twice on the same generated input: as it is (small, so the
Python path) and with the caller's size threshold set below the input's size (the
vectorised pandas path), and asks for the same values, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import features.crosscase as crosscase
import features.log as log
import features.prefixes as prefixes
from features.mapping import default_mapping

TEXT = st.one_of(st.none(), st.just(""), st.just("  "), st.sampled_from(
    ["Quote Issued", " Won ", "Net 30", "net 45 days", "2024-01-05T10:00:00+01:00",
     "2024-01-05 10:00", "2024-01-05T10:00:00Z", "x"]), st.text(max_size=6))
SETTINGS = settings(max_examples=80, deadline=None)


@contextmanager
def general_path(module: object, name: str = "SMALL_FRAME_ROWS") -> Iterator[None]:
    """The caller's threshold below every input: the vectorised path runs."""
    with mock.patch.object(module, name, -1):
        yield


def same(a: object, b: object) -> None:
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    assert a.shape == b.shape
    assert [None if pd.isna(x) else x for x in a.tolist()] == [
        None if pd.isna(x) else x for x in b.tolist()]


@given(st.lists(st.one_of(TEXT, st.integers(-5, 5), st.floats(allow_nan=True)), max_size=30))
@SETTINGS
def test_text_cells_are_stripped_as_pandas_strips_them(cells: list[object]) -> None:
    series = pd.Series(cells, dtype=object)
    fast = log._as_text(series)
    with general_path(log):
        slow = log._as_text(series)
    same(fast, slow)


@given(st.lists(TEXT, max_size=30))
@SETTINGS
def test_offsets_found_in_python_are_pandas_matches(cells: list[str | None]) -> None:
    text = pd.array(cells, dtype=object)
    fast = log.small.matches(list(text), log._HAS_OFFSET)
    slow = pd.Series(text).str.contains(log._OFFSET, regex=True, na=False).to_numpy()
    assert np.array_equal(fast, slow.astype(bool))


@given(st.lists(TEXT, max_size=30))
@SETTINGS
def test_payment_terms_read_in_python_are_pandas_extracts(cells: list[str | None]) -> None:
    mapping = default_mapping()
    terms = log._as_text(pd.Series(cells, dtype=object))
    fast = log._terms_days(terms, mapping)
    with general_path(log):
        slow = log._terms_days(log._as_text(pd.Series(cells, dtype=object)), mapping)
    assert np.array_equal(fast, slow, equal_nan=True)


@given(st.lists(TEXT, max_size=30), st.dictionaries(
    st.sampled_from(["Quote Issued", "x", "Won", ""]), st.sampled_from(["A", "B"])))
@SETTINGS
def test_activities_renamed_in_python_are_pandas_maps(cells: list[str | None],
                                                      names: dict[str, str]) -> None:
    mapping = default_mapping().model_copy(update={"activities": names})
    exported = log._as_text(pd.Series(cells, dtype=object))
    fast = log._translate_activities(exported, mapping)
    fast_unknown = log._unknown_activities(fast, mapping)
    with general_path(log):
        slow = log._translate_activities(exported, mapping)
        slow_unknown = log._unknown_activities(slow, mapping)
    same(fast, slow)
    assert np.array_equal(fast_unknown, np.asarray(slow_unknown, dtype=bool))


@given(st.lists(st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["a", "b"]),
                          st.sampled_from([1, 1.0, 2])), max_size=12))
@SETTINGS
def test_repeated_rows_found_in_python_are_pandas_duplicates(
        rows: list[tuple[str, str, float]]) -> None:
    frame = pd.DataFrame(rows, columns=["case", "activity", "time"], dtype=object)
    fast = log._may_hold_duplicates(frame, list(frame.columns), np.ones(len(frame), bool))
    assert fast == bool(frame.duplicated().any())


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3),
                          st.one_of(st.integers(0, 3), st.none())), max_size=15))
@SETTINGS
def test_order_seen_in_python_agrees_with_the_sort(rows: list[tuple[str, int, int]]) -> None:
    cases = np.asarray([r[0] for r in rows], dtype=object)
    times = pd.array(pd.to_datetime([r[1] for r in rows], unit="D", utc=True))
    ties = np.asarray([r[2] for r in rows], dtype=object)
    if prefixes._visibly_in_order(cases, times, ties):  # never claims an order that isn't
        frame = pd.DataFrame({"c": cases, "t": times, "k": ties})
        assert frame.equals(frame.sort_values(["c", "t", "k"], kind="stable"))


@given(st.lists(st.text(max_size=3), min_size=1, max_size=60, unique=True), st.data())
@SETTINGS
def test_codes_picked_in_python_are_the_category_table(categories: list[str],
                                                       picks: st.DataObject) -> None:
    codes = np.asarray(picks.draw(st.lists(st.integers(-1, len(categories) - 1),
                                           max_size=120)), dtype=np.int64)
    table = np.append(np.asarray(categories, dtype=object), np.nan)[codes]
    got = prefixes.small.picked(codes, tuple(categories))
    assert got.dtype == object
    same(got, table)


@given(st.lists(st.one_of(st.sampled_from(["r1", "r2", "r3"]), st.none(),
                          st.just(float("nan"))), max_size=40),
       st.lists(st.sampled_from(["r1", "r2", "r4", "r2"]), max_size=4))
@SETTINGS
def test_positions_from_the_dict_are_the_index_lookup(queries: list[object],
                                                      values: list[str]) -> None:
    fast = prefixes.Lookup(values).positions(np.asarray(queries, dtype=object))
    with general_path(prefixes, "FEW_QUERIES"):
        slow = prefixes.Lookup(values).positions(np.asarray(queries, dtype=object))
    assert np.array_equal(fast, slow)


@given(st.integers(1, 300), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_running_sums_in_python_are_pandas_groupby_cumsum(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 2)) * 10.0 ** rng.integers(0, 17, size=(n, 2))
    groups = np.sort(rng.integers(0, 6, n))
    fast = crosscase.running_sums(values, groups)
    with general_path(crosscase, "FEW_FACTS"):
        slow = crosscase.running_sums(values, groups)
    assert np.array_equal(fast, slow)

