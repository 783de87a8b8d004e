"""Cross-case (intercase) features, each computed as of the prefix end only.

A rep's open workload, win rate and cycle time, a region's open pipeline and an
account's history and payment habits come from *other* cases. Each fact about
another case carries the time it became known (the case started, its outcome was
logged, its payment arrived), and a prefix ending at t only counts facts known at or
before t. Queries are vectorised: per group, facts are sorted by time with running
sums, and every prefix looks up its count and sums with one ``searchsorted``.

The fitted encoder keeps a per-case summary of the training log, so a single running
case scored by the API still sees its rep's and account's history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features.encoders import PrefixEncoder, last_known
from features.mapping import Roles
from features.outcomes import payment_timing
from features.prefixes import seconds

_NEVER = np.iinfo(np.int64).max // 4  # "not (yet) happened": after every query time
_DAY = 86400


def _sec_or_never(times: pd.Series) -> np.ndarray:
    known = times.notna().to_numpy()
    out = np.full(len(times), _NEVER, dtype=np.int64)
    if known.any():
        out[known] = seconds(times[known])
    return out


def _first_known(prepared: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """Per case, the first non-missing value of a column and when it appeared."""
    rows = prepared.loc[prepared[column].notna(), ["case_id", column, "timestamp"]]
    first = rows.groupby("case_id", sort=False).head(1).set_index("case_id")
    return first[column], first["timestamp"]


def case_history(prepared: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """One row per case with every fact another case's prefix may need, and its time."""
    cases = pd.Index(prepared["case_id"].unique(), name="case_id")
    start = prepared.groupby("case_id", sort=False)["timestamp"].first().reindex(cases)
    history = pd.DataFrame(index=cases)
    history["start_sec"] = seconds(start)
    for column in ("rep", "region", "account"):
        value, known = _first_known(prepared, column)
        history[column] = value.reindex(cases).astype("object")
        history[f"{column}_sec"] = _sec_or_never(known.reindex(cases))
    ends = roles.end_activities
    end = (prepared.loc[prepared["activity"].isin(ends)].groupby("case_id", sort=False)
           ["timestamp"].min().reindex(cases)) if ends else pd.Series(pd.NaT, index=cases)
    history["end_sec"] = _sec_or_never(end)
    history["cycle_days"] = (history["end_sec"] - history["start_sec"]) / _DAY
    pay = payment_timing(prepared, roles).reindex(cases)
    history["payment_sec"] = _sec_or_never(pay["payment_time"])
    history["payment_delay_days"] = pay["delay_days"].astype("float64")
    return history


def decision_facts(prepared: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Each win/loss event as a change to the counts (decided, won) at its own time.

    Under 'any' only a case's first decisive event counts. Under 'last_of_won_lost' a
    later decisive event replaces the earlier verdict from its own time on (it adds
    0 decided and won - previous won), so the past is never rewritten.
    """
    is_won = prepared["activity"].isin(roles.won)
    decisive = is_won | prepared["activity"].isin(roles.lost)
    rows = prepared.loc[decisive, ["case_id", "timestamp"]].assign(
        won=is_won[decisive].astype("float64").to_numpy())
    previous = rows.groupby("case_id", sort=False)["won"].shift(1)
    if roles.outcome_rule != "last_of_won_lost":
        rows, previous = rows[previous.isna()], previous[previous.isna()]
    return pd.DataFrame({
        "time_sec": seconds(rows["timestamp"]),
        "d_decided": previous.isna().astype("float64").to_numpy(),
        "d_won": (rows["won"] - previous.fillna(0.0)).to_numpy(),
    }, index=pd.Index(rows["case_id"].to_numpy(), name="case_id"))


@dataclass
class _AsOf:
    """Facts of one kind sorted by (group, time) with running sums, for as-of lookups.

    Running sums restart in every group, so a group's answers are exact and never move
    when facts of another group change.
    """

    keys: np.ndarray
    sums: np.ndarray  # (n, k) running sums within each group
    span: int

    @classmethod
    def build(cls, codes: np.ndarray, times: np.ndarray, values: np.ndarray, span: int) -> _AsOf:
        known = (codes >= 0) & (times < _NEVER)
        # facts later than every query still sort after them within their group
        keys = codes[known] * span + np.minimum(times[known], span - 1)
        order = np.argsort(keys, kind="stable")
        vals = np.nan_to_num(values[known][order].astype("float64"))
        if len(vals) == 0:
            return cls(keys=keys, sums=np.zeros((0, values.shape[1])), span=span)
        groups = codes[known][order]
        sums = pd.DataFrame(vals).groupby(groups, sort=False).cumsum().to_numpy()
        return cls(keys=keys[order], sums=sums, span=span)

    def at(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Sums of the facts of each query's group known at or before its time."""
        valid = codes >= 0
        upto = np.searchsorted(self.keys, codes * self.span + times, side="right")
        first = np.searchsorted(self.keys, codes * self.span, side="left")
        has_facts = (upto > first)[:, None]
        if len(self.keys) == 0:
            result = np.zeros((len(codes), self.sums.shape[1]))
        else:
            result = np.where(has_facts, self.sums[np.maximum(upto - 1, 0)], 0.0)
        result[~valid] = np.nan
        return result


class CrossCaseEncoder(PrefixEncoder):
    """Workload, track record and payment habits of the rep, region and account.

    Facts and the time they become known:
    - a case counts as open for its rep/region from when its rep/region is first known
      until its end event (end activities of the mapping);
    - a win or loss counts from the outcome event; a cycle time from the end event;
    - a payment delay counts from the payment event.
    """

    def __init__(self, roles: Roles | None = None, recent_days: float = 30.0) -> None:
        self.roles = roles
        self.recent_days = recent_days

    def fit(self, prepared: pd.DataFrame, y: object = None) -> CrossCaseEncoder:
        self.history_ = case_history(prepared, self._roles())
        self.decisions_ = decision_facts(prepared, self._roles())
        names = ["rep_started_recent", "rep_decided_cases", "rep_win_rate",
                 "rep_mean_cycle_days", "account_prior_cases", "account_won_cases",
                 "account_paid_cases", "account_mean_payment_delay_days"]
        if self._roles().end_activities:
            names = ["rep_open_cases", "region_open_cases", *names]
        self.feature_names_out_ = names
        return self

    def _roles(self) -> Roles:
        return self.roles if self.roles is not None else Roles()

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "history_")
        current = case_history(prepared, self._roles())
        stored = self.history_[~self.history_.index.isin(current.index)]
        history = pd.concat([stored, current]) if len(stored) else current
        current_decisions = decision_facts(prepared, self._roles())
        old = self.decisions_[~self.decisions_.index.isin(current.index)]
        decisions = pd.concat([old, current_decisions]) if len(old) else current_decisions
        decisions = decisions[decisions.index.isin(history.index)]
        position = history.index.get_indexer(decisions.index)
        t = seconds(prepared["timestamp"])
        origin = int(min(t.min(), history["start_sec"].min()))
        t = t - origin
        span = int(max(t.max(), 1)) + 400 * _DAY
        hist_time = {c: np.where(history[c] < _NEVER, history[c] - origin, _NEVER)
                     for c in ("start_sec", "rep_sec", "region_sec", "account_sec", "end_sec",
                               "payment_sec")}
        decided = (decisions["time_sec"].to_numpy() - origin, position,
                   decisions[["d_decided", "d_won"]].to_numpy())
        out = pd.DataFrame(index=prepared.index)
        for column in ("rep", "region", "account"):
            query_values = last_known(prepared, column).astype("object")
            hist_codes, query_codes = self._codes(history[column], query_values)
            stats = self._group_stats(column, history, hist_time, hist_codes, span, decided)
            for name, compute in stats.items():
                out[name] = compute(query_codes, t)
        if "account_prior_cases" in out:
            out["account_prior_cases"] -= self._self_counted(prepared, history, hist_time, t)
        return out[self.feature_names_out_]

    @staticmethod
    def _codes(hist_values: pd.Series, query_values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        both = pd.concat([hist_values.reset_index(drop=True), query_values.reset_index(drop=True)])
        codes, _ = pd.factorize(both, use_na_sentinel=True)
        return codes[: len(hist_values)].astype(np.int64), codes[len(hist_values):].astype(np.int64)

    def _group_stats(self, column: str, history: pd.DataFrame, hist_time: dict[str, np.ndarray],
                     codes: np.ndarray, span: int,
                     decided_facts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
        ones = np.ones((len(history), 1))
        known_from = hist_time[f"{column}_sec"]
        dec_time, dec_pos, dec_values = decided_facts
        dec_codes, dec_known = codes[dec_pos], np.maximum(dec_time, known_from[dec_pos])
        stats = {}
        if column in ("rep", "region") and self._roles().end_activities:
            started = _AsOf.build(codes, known_from, ones, span)
            ended = _AsOf.build(codes, np.maximum(hist_time["end_sec"], known_from), ones, span)
            stats[f"{column}_open_cases"] = (
                lambda q, t, s=started, e=ended: (s.at(q, t) - e.at(q, t))[:, 0])
        if column == "rep":
            started = _AsOf.build(codes, known_from, ones, span)
            recent = int(self.recent_days * _DAY)
            stats["rep_started_recent"] = (
                lambda q, t, s=started: (s.at(q, t) - s.at(q, np.maximum(t - recent, -1)))[:, 0])
            decided = _AsOf.build(dec_codes, dec_known, dec_values, span)
            stats["rep_decided_cases"] = lambda q, t, d=decided: d.at(q, t)[:, 0]
            stats["rep_win_rate"] = lambda q, t, d=decided: _ratio(d.at(q, t))
            done = _AsOf.build(codes, np.maximum(hist_time["end_sec"], known_from),
                               np.c_[ones, history["cycle_days"].to_numpy()], span)
            stats["rep_mean_cycle_days"] = lambda q, t, d=done: _ratio(d.at(q, t))
        if column == "account":
            started = _AsOf.build(codes, known_from, ones, span)
            stats["account_prior_cases"] = lambda q, t, s=started: s.at(q, t)[:, 0]
            decided = _AsOf.build(dec_codes, dec_known, dec_values[:, 1:], span)
            stats["account_won_cases"] = lambda q, t, d=decided: d.at(q, t)[:, 0]
            paid = _AsOf.build(codes, np.maximum(hist_time["payment_sec"], known_from),
                               np.c_[ones, history["payment_delay_days"].to_numpy()], span)
            stats["account_paid_cases"] = lambda q, t, p=paid: p.at(q, t)[:, 0]
            stats["account_mean_payment_delay_days"] = lambda q, t, p=paid: _ratio(p.at(q, t))
        return stats

    @staticmethod
    def _self_counted(prepared: pd.DataFrame, history: pd.DataFrame,
                      hist_time: dict[str, np.ndarray], t: np.ndarray) -> np.ndarray:
        """1 where the prefix's own case is among its account's counted cases."""
        position = history.index.get_indexer(prepared["case_id"])
        own_account = history["account"].to_numpy()[position]
        now_account = last_known(prepared, "account").astype("object").to_numpy()
        known = hist_time["account_sec"][position] <= t
        return ((own_account == now_account) & known & pd.notna(now_account)).astype(float)

    def readable_names(self) -> dict[str, str]:
        return {
            "rep_open_cases": "rep's open deals now",
            "region_open_cases": "open deals in the region now",
            "rep_started_recent": f"deals the rep took on in the last {self.recent_days:g} days",
            "rep_decided_cases": "rep's decided deals so far",
            "rep_win_rate": "rep's win rate so far",
            "rep_mean_cycle_days": "rep's average cycle time (days)",
            "account_prior_cases": "account's other deals so far",
            "account_won_cases": "account's won deals so far",
            "account_paid_cases": "account's paid invoices so far",
            "account_mean_payment_delay_days": "account's average payment delay (days)",
        }


def _ratio(sums: np.ndarray) -> np.ndarray:
    """Mean of the second column over the count in the first; missing when no facts."""
    count = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, sums[:, 1] / np.where(count > 0, count, 1), np.nan)
