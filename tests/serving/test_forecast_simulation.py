"""The forecast's simulation, drawn a few simulations at a time: the same sums whatever
the chunk, and the sums a hand count gives."""

from __future__ import annotations

import numpy as np

from serving.forecast import Deals, simulate


def _deals(n: int, seed: int = 0) -> Deals:
    rng = np.random.default_rng(seed)
    point = rng.uniform(5, 200, n)
    return Deals(p=rng.uniform(0, 1, n), value=rng.uniform(1e3, 1e5, n),
                 is_open=rng.random(n) < 0.8, point=point, lower=point * 0.4,
                 upper=point * 2.0, elapsed=rng.uniform(0, 30, n))


def test_the_sums_do_not_depend_on_how_many_simulations_are_drawn_at_once() -> None:
    deals = _deals(300)
    ends = np.array([20.0, 51.0, 81.0, 112.0])
    codes = np.arange(300) % 3
    whole = simulate(deals, ends, 10.0, 200, codes, 3, seed=7, cells=10**9)
    for cells in (1, 299, 301, 4_000):
        chunked = simulate(deals, ends, 10.0, 200, codes, 3, seed=7, cells=cells)
        for name in ("bookings", "cash", "group_bookings", "group_cash"):
            np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    # inside the horizon, the groups' money is the months' money
    np.testing.assert_allclose(whole.group_cash.sum(axis=1), whole.cash.sum(axis=1))
    np.testing.assert_allclose(whole.group_bookings.sum(axis=1), whole.bookings.sum(axis=1))
    assert whole.cash.sum() > 0 and whole.bookings.sum() > 0
    assert not np.array_equal(whole.cash, simulate(deals, ends, 10.0, 200, codes, 3,
                                                   seed=8).cash)


def test_certain_deals_that_end_now_land_in_the_first_month() -> None:
    n = 50
    value = np.arange(1.0, n + 1)
    p = (np.arange(n) % 2).astype(float)  # every other deal is won for certain
    zero = np.zeros(n)
    is_open = np.arange(n) < 40  # the last ten are won, awaiting payment
    p[~is_open] = 1.0
    deals = Deals(p=p, value=value, is_open=is_open, point=zero, lower=zero, upper=zero,
                  elapsed=zero)
    sums = simulate(deals, np.array([30.0, 60.0]), 0.0, 25, np.zeros(n, dtype=np.int64), 1,
                    seed=1, cells=60)
    won = p == 1.0
    np.testing.assert_array_equal(sums.cash[:, 0], np.full(25, value[won].sum()))
    np.testing.assert_array_equal(sums.cash[:, 1], np.zeros(25))
    # a won deal awaiting payment was booked before: only the open wins are bookings
    np.testing.assert_array_equal(sums.bookings[:, 0], np.full(25, value[won & is_open].sum()))
