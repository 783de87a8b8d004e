"""The faster paths of feature building give exactly what the plain computations give:
categories learnt from codes, first occurrences without a sort, counts and last known
values within cases, a log recognised as sorted, and prefixes encoded from each case's
first rows alone (``EventRows.head``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.encoders import coded, learn_coded_categories, recoded
from features.log import canonicalize
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import CaseRows, first_occurrences, prepare_events, prepare_rows
from features.simulate import simulate_log
from features.small import SMALL_FRAME_ROWS

VALUES = st.lists(st.sampled_from(["a", "b", "c", "d", "é", None]), min_size=0, max_size=40)
LENGTHS = st.lists(st.integers(1, 6), min_size=1, max_size=10)


def learn_categories(values: pd.Series | np.ndarray, min_frequency: int,
                     max_categories: int) -> list[str]:
    """The plain computation: the most frequent values seen at least ``min_frequency``
    times, sorted by name, from pandas' ``value_counts`` of every row's value."""
    counts = pd.Series(values).dropna().value_counts()
    counts = counts[counts >= min_frequency].head(max_categories)
    return sorted(counts.index.astype(str))


def _case_rows(lengths: list[int]) -> tuple[CaseRows, np.ndarray]:
    k = np.concatenate([np.arange(length) for length in lengths])
    return CaseRows(k + 1), np.repeat(np.arange(len(lengths)), lengths)


@settings(max_examples=80, deadline=None)
@given(VALUES, st.integers(1, 3), st.integers(0, 4), st.booleans())
def test_categories_from_codes_are_those_of_value_counts(values: list[str | None],
                                                         min_frequency: int, most: int,
                                                         as_text: bool) -> None:
    """Equal counts at the cut keep the order of first appearance in both."""
    column = (pd.Series(values, dtype="str") if as_text
              else np.asarray([np.nan if v is None else v for v in values], dtype=object))
    codes, uniques = pd.factorize(column)
    assert (learn_coded_categories(codes, np.asarray(uniques, dtype=object), min_frequency,
                                   most)
            == learn_categories(column, min_frequency, most))


@settings(max_examples=60, deadline=None)
@given(VALUES, st.lists(st.sampled_from(["a", "c", "é", "z"]), max_size=4, unique=True))
def test_lookups_per_distinct_value_are_those_per_row(values: list[str | None],
                                                      categories: list[str]) -> None:
    objects = np.asarray([np.nan if v is None else v for v in values], dtype=object)
    codes, uniques = pd.factorize(objects)
    assert np.array_equal(recoded(codes, np.asarray(uniques, dtype=object), categories),
                          coded(objects, categories).codes.astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2, 5), max_size=50))
def test_first_occurrences_are_those_np_unique_marks(keys: list[int]) -> None:
    array = np.asarray(keys, dtype=np.int64)
    expected = np.zeros(len(array), dtype=bool)
    expected[np.unique(array, return_index=True)[1]] = True
    assert np.array_equal(first_occurrences(array), expected)


@settings(max_examples=60, deadline=None)
@given(LENGTHS, st.randoms(use_true_random=False))
def test_counts_and_last_known_values_within_cases_match_groupby(lengths: list[int],
                                                                 rnd: object) -> None:
    cases, case = _case_rows(lengths)
    n = len(case)
    flags = np.array([rnd.random() < 0.5 for _ in range(n)])
    codes = np.array([rnd.randint(-1, 3) for _ in range(n)], dtype=np.int64)
    values = np.where(codes >= 0, codes * 1.5, np.nan)
    assert np.array_equal(cases.count(flags),
                          pd.Series(flags.astype(np.int64)).groupby(case).cumsum().to_numpy())
    ffilled = pd.Series(values).groupby(case).ffill().to_numpy()
    assert np.array_equal(cases.ffill(values), ffilled, equal_nan=True)
    known = pd.Series(np.where(codes >= 0, codes, np.nan)).groupby(case).ffill()
    assert np.array_equal(cases.ffill_codes(codes), known.fillna(-1).to_numpy(np.int64))
    assert np.array_equal(cases.next_case(), np.cumsum(lengths)[case])


@pytest.fixture(scope="module")
def long_log() -> tuple[pd.DataFrame, PrefixPipeline]:
    """More events than ``SMALL_FRAME_ROWS``: pyarrow text, the vectorised paths."""
    mapping = default_mapping()
    events = canonicalize(simulate_log(n_cases=700, seed=11)[0], mapping).events
    assert len(events) > SMALL_FRAME_ROWS
    return events, PrefixPipeline(roles=mapping.roles).fit(events)


def test_a_log_in_case_order_and_the_same_log_shuffled_give_one_frame(long_log) -> None:
    """The in-order check (pyarrow comparisons of neighbouring case ids) and the lexsort
    agree, and the sorted log is recognised without reordering its rows."""
    events, pipe = long_log
    ordered = events.sort_values(["case_id", "timestamp", "source_row"], kind="stable")
    ordered = ordered.reset_index(drop=True)
    rows = prepare_rows(ordered)
    assert rows.array("case_id") is ordered["case_id"].array  # taken as it is
    shuffled = events.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(pipe.transform(ordered), pipe.transform(shuffled))


def test_each_cases_first_rows_encoded_alone_equal_the_whole_transform_cut(long_log) -> None:
    """``max_prefix_len`` encodes only the kept rows (cross-case facts still read every
    event); the frame equals the unlimited one cut, case ids in the same text dtype."""
    events, pipe = long_log
    full = pipe.transform(events)
    pipe.max_prefix_len = 4
    try:
        cut = pipe.transform(events)
        encoded = pipe.encode(events)
    finally:
        pipe.max_prefix_len = None
    expected = full[full["prefix_len"] <= 4].reset_index(drop=True)
    assert 0 < len(cut) < len(full)
    pd.testing.assert_frame_equal(cut, expected)
    assert cut["case_id"].dtype == full["case_id"].dtype == events["case_id"].dtype
    assert isinstance(encoded.keys["case_id"], np.ndarray)  # scoring gets objects
    prepared = prepare_events(events)
    latest_rep = prepared.groupby("case_id")["rep"].ffill()[prepared["prefix_len"] <= 4]
    assert (pd.Series(encoded.last_given("rep")).fillna("-").tolist()
            == latest_rep.fillna("-").tolist())
