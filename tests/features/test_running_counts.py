"""Running counts within cases, each text column factorized once, and prefixes cut
encoder by encoder: the faster paths give exactly what the plain computations give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.log import canonicalize
from features.mapping import default_mapping
from features.pipeline import PrefixPipeline
from features.prefixes import CaseRows, EventRows
from features.simulate import simulate_log
from features.small import SMALL_FRAME_ROWS


def _naive(codes: np.ndarray, width: int, lengths: list[int]) -> np.ndarray:
    """The count of each code so far in the case, by groupby over a one-hot frame."""
    case = np.repeat(np.arange(len(lengths)), lengths)
    onehot = pd.DataFrame({j: (codes == j).astype(np.int64) for j in range(width)})
    return onehot.groupby(case).cumsum().to_numpy().reshape(len(codes), width)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 5),
       st.randoms(use_true_random=False))
def test_running_counts_match_a_groupby_of_the_one_hot(lengths: list[int], width: int,
                                                      rnd: object) -> None:
    n = sum(lengths)
    # -1 (missing) and width (beyond the counted codes) are counted nowhere
    codes = np.array([rnd.randint(-1, width) for _ in range(n)], dtype=np.int64)
    k = np.concatenate([np.arange(length) for length in lengths])
    counts = CaseRows(k + 1).running_counts(codes, width)
    assert counts.dtype == np.int64 and counts.shape == (n, width)
    assert np.array_equal(counts, _naive(codes, width, lengths))


@pytest.mark.parametrize("cases", [2, SMALL_FRAME_ROWS // 5 + 1])  # a short, a long column
def test_factorized_once_and_as_pandas_factorizes_the_values(cases: int) -> None:
    n = 5 * cases
    events = pd.DataFrame({
        "case_id": np.repeat([f"c{i}" for i in range(cases)], 5),
        "prefix_len": np.tile(np.arange(1, 6), cases),
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        "resource": pd.array(["x", None, "y", "x", "z"] * cases, dtype="str")})
    rows = EventRows(events)
    codes, uniques = rows.factorized("resource")
    assert rows.factorized("resource")[0] is codes  # computed once
    expected_codes, expected_uniques = pd.factorize(rows["resource"])
    assert np.array_equal(codes, expected_codes)
    assert list(uniques) == list(expected_uniques) and uniques.dtype == object
    assert pd.isna(rows["resource"][1]) and codes[1] == -1


def test_prefixes_cut_encoder_by_encoder_equal_the_full_transform_cut() -> None:
    """A transform limited to prefixes of length <= 3 (cut as each encoder finishes)
    holds exactly the rows of the unlimited transform with those lengths."""
    mapping = default_mapping()
    events = canonicalize(simulate_log(n_cases=120, seed=5)[0], mapping).events
    every = PrefixPipeline(roles=mapping.roles).fit(events)
    short = PrefixPipeline(roles=mapping.roles, max_prefix_len=3).fit(events)
    full = every.transform(events)
    cut = short.transform(events)
    expected = full[full["prefix_len"] <= 3].reset_index(drop=True)
    assert len(cut) < len(full)
    pd.testing.assert_frame_equal(cut, expected)
