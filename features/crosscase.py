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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features.encoders import PrefixEncoder
from features.mapping import Roles
from features.outcomes import payment_timing
from features.prefixes import by_case, case_starts, seconds

_NEVER = np.iinfo(np.int64).max // 4  # "not (yet) happened": after every query time
_DAY = 86400
#: up to this many facts, running sums are taken in Python (see ``running_sums``)
_FEW_FACTS = 256


def running_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` (rows) restarting in every group, exactly as pandas'
    ``groupby(...).cumsum()`` computes them (Kahan-compensated, bit for bit).

    A request brings a handful of facts, where pandas' groupby costs ~1 ms a call; the
    same compensated loop in Python takes microseconds. Larger inputs go to pandas.
    """
    if len(values) > _FEW_FACTS:
        return pd.DataFrame(values).groupby(groups, sort=False).cumsum().to_numpy()
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


def _sec_or_never(times: pd.Series) -> np.ndarray:
    known = times.notna().to_numpy()
    out = np.full(len(times), _NEVER, dtype=np.int64)
    if known.any():
        out[known] = seconds(times[known])
    return out


def _first_known(prepared: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per case, each column's first non-missing value and when it appeared.

    Rows are sorted by time within a case, so the earliest time at which a column is
    filled is when its first value became known; one groupby serves all columns.
    """
    by_case = prepared.groupby("case_id", sort=False)
    values = by_case[columns].first()
    filled = prepared[columns].notna().to_numpy()
    times = pd.DataFrame(np.where(filled, seconds(prepared["timestamp"])[:, None], _NEVER),
                         columns=columns, index=prepared.index)
    return values, times.groupby(prepared["case_id"], sort=False).min()


def case_history(prepared: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """One row per case with every fact another case's prefix may need, and its time."""
    cases = pd.Index(prepared["case_id"].unique(), name="case_id")
    first_rows = case_starts(prepared["case_id"]) == np.arange(len(prepared))
    facts: dict[str, object] = {"start_sec": seconds(prepared["timestamp"])[first_rows]}
    values, known = _first_known(prepared, list(_KINDS))
    for column in _KINDS:
        facts[column] = values[column].reindex(cases).astype("object")
        facts[f"{column}_sec"] = known[column].reindex(cases).to_numpy(dtype=np.int64)
    ends = roles.end_activities
    is_end = prepared["activity"].isin(ends) if ends else None
    facts["end_sec"] = np.full(len(cases), _NEVER, dtype=np.int64)
    if is_end is not None and is_end.any():
        end = prepared.loc[is_end].groupby("case_id", sort=False)["timestamp"].min()
        facts["end_sec"] = _sec_or_never(end.reindex(cases))
    facts["cycle_days"] = (facts["end_sec"] - facts["start_sec"]) / _DAY
    facts["payment_sec"] = np.full(len(cases), _NEVER, dtype=np.int64)
    facts["payment_delay_days"] = np.full(len(cases), np.nan)
    if roles.payment and prepared["activity"].isin(roles.payment).any():  # else none paid
        pay = payment_timing(prepared, roles).reindex(cases)
        facts["payment_sec"] = _sec_or_never(pay["payment_time"])
        facts["payment_delay_days"] = pay["delay_days"].to_numpy(dtype="float64")
    history = pd.DataFrame(facts, index=cases)  # one frame: column inserts cost ~0.3 ms each
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
        sums = running_sums(vals, codes[known][order])
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


#: seconds from 1900 to 1970: shifts every time >= 0 so (group, time) fits one int64 key
_OFFSET = 2_208_988_800
_SPAN = 2**34  # > any shifted time before the year 2444
#: the fact kinds each grouping column needs
_KINDS = {"rep": ("opened", "closed", "decided", "done"),
          "region": ("opened", "closed"),
          "account": ("opened", "decided", "paid")}


def _shifted(times: np.ndarray) -> np.ndarray:
    return np.where(times < _NEVER, times + _OFFSET, _NEVER)


def _facts(history: pd.DataFrame, decisions: pd.DataFrame, column: str,
           codes: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(group codes, known-at times, values) of every fact kind for one grouping column."""
    ones = np.ones((len(history), 1))
    known = _shifted(history[f"{column}_sec"].to_numpy())
    end = np.maximum(_shifted(history["end_sec"].to_numpy()), known)
    position = history.index.get_indexer(decisions.index)
    inside = position >= 0
    position = position[inside]
    facts = {
        "opened": (codes, known, ones),
        "closed": (codes, end, ones),
        "done": (codes, end, np.c_[ones, history["cycle_days"].to_numpy()]),
        "paid": (codes, np.maximum(_shifted(history["payment_sec"].to_numpy()), known),
                 np.c_[ones, history["payment_delay_days"].to_numpy()]),
        "decided": (codes[position],
                    np.maximum(_shifted(decisions["time_sec"].to_numpy()[inside]),
                               known[position]),
                    decisions[["d_decided", "d_won"]].to_numpy()[inside]),
    }
    return {kind: facts[kind] for kind in _KINDS[column]}


@dataclass
class _AsOfQuery:
    """As-of sums for the queries ``q`` of one grouping column: the stored history's,
    plus the given cases' facts, minus the stored facts of those same cases.

    Each fact kind's index of the given cases is built once and reused by every query
    time; the subtraction is skipped when no given case is stored (a new case at the
    API) or when all stored facts are replaced (training).
    """

    stored: dict[str, _AsOf]
    added: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    removed: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    whole_history_given: bool
    q: np.ndarray
    built: dict[str, tuple[_AsOf, _AsOf | None]] = field(default_factory=dict)

    def _indexes(self, kind: str) -> tuple[_AsOf, _AsOf | None]:
        if kind not in self.built:
            plus = _AsOf.build(*self.added[kind], _SPAN)
            removed = self.removed.get(kind)
            minus = _AsOf.build(*removed, _SPAN) if removed and len(removed[0]) else None
            self.built[kind] = plus, minus
        return self.built[kind]

    def __call__(self, kind: str, times: np.ndarray) -> np.ndarray:
        plus, minus = self._indexes(kind)
        result = plus.at(self.q, times)
        if self.whole_history_given:  # stored facts all replaced: skip the arithmetic
            return result
        result = result + self.stored[kind].at(self.q, times)
        return result if minus is None else result - minus.at(self.q, times)


class CrossCaseEncoder(PrefixEncoder):
    """Workload, track record and payment habits of the rep, region and account.

    Facts and the time they become known:
    - a case counts as open for its rep/region from when its rep/region is first known
      until its end event (end activities of the mapping);
    - a win or loss counts from the outcome event; a cycle time from the end event;
    - a payment delay counts from the payment event.

    As-of sums are additive, so the stored history is indexed once (``set_history``) and
    a transform only adds the facts of the cases it is given and subtracts the stored
    facts of those same cases: scoring one running case touches a handful of facts.
    """

    def __init__(self, roles: Roles | None = None, recent_days: float = 30.0) -> None:
        self.roles = roles
        self.recent_days = recent_days

    def fit(self, prepared: pd.DataFrame, y: object = None) -> CrossCaseEncoder:
        self.set_history(prepared)
        names = ["rep_started_recent", "rep_decided_cases", "rep_win_rate",
                 "rep_mean_cycle_days", "account_prior_cases", "account_won_cases",
                 "account_paid_cases", "account_mean_payment_delay_days"]
        if self._roles().end_activities:
            names = ["rep_open_cases", "region_open_cases", *names]
        self.feature_names_out_ = names
        return self

    def _roles(self) -> Roles:
        return self.roles if self.roles is not None else Roles()

    def set_history(self, prepared: pd.DataFrame) -> CrossCaseEncoder:
        """Remember these cases' facts for scoring cases that arrive without history."""
        self.history_ = case_history(prepared, self._roles())
        self.decisions_ = decision_facts(prepared, self._roles())
        self.groups_: dict[str, pd.Index] = {}
        self.index_: dict[str, dict[str, _AsOf]] = {}
        for column in _KINDS:
            values = self.history_[column]
            self.groups_[column] = pd.Index(values.dropna().unique())
            codes = self.groups_[column].get_indexer(values)
            self.index_[column] = {
                kind: _AsOf.build(*arrays, _SPAN)
                for kind, arrays in _facts(self.history_, self.decisions_, column,
                                           codes).items()}
        return self

    def transform(self, prepared: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "index_")
        roles = self._roles()
        current = case_history(prepared, roles)
        current_decisions = decision_facts(prepared, roles)
        stored = self.history_.index.get_indexer(current.index)
        replaced = self.history_.iloc[stored[stored >= 0]]
        replaced_decisions = self.decisions_[self.decisions_.index.isin(replaced.index)]
        t = seconds(prepared["timestamp"]) + _OFFSET
        recent = int(self.recent_days * _DAY)
        queries = by_case(prepared[list(_KINDS)], prepared["case_id"]).ffill()
        out = pd.DataFrame(index=prepared.index)
        for column in _KINDS:
            query_values = queries[column].astype("object")
            groups = self.groups_[column]
            new = pd.Index(pd.concat([current[column], query_values]).dropna().unique())
            groups = groups.append(new.difference(groups)) if len(new) else groups
            at = _AsOfQuery(
                stored=self.index_[column],
                added=_facts(current, current_decisions, column,
                             groups.get_indexer(current[column])),
                removed=_facts(replaced, replaced_decisions, column,
                               groups.get_indexer(replaced[column])) if len(replaced) else {},
                whole_history_given=len(replaced) == len(self.history_),
                q=groups.get_indexer(query_values))
            if column in ("rep", "region") and roles.end_activities:
                out[f"{column}_open_cases"] = (at("opened", t) - at("closed", t))[:, 0]
            if column == "rep":
                out["rep_started_recent"] = (at("opened", t) - at("opened", t - recent))[:, 0]
                decided = at("decided", t)
                out["rep_decided_cases"] = decided[:, 0]
                out["rep_win_rate"] = _ratio(decided)
                out["rep_mean_cycle_days"] = _ratio(at("done", t))
            if column == "account":
                own = self._self_counted(prepared, current, query_values, t)
                out["account_prior_cases"] = at("opened", t)[:, 0] - own
                out["account_won_cases"] = at("decided", t)[:, 1]
                paid = at("paid", t)
                out["account_paid_cases"] = paid[:, 0]
                out["account_mean_payment_delay_days"] = _ratio(paid)
        return out[self.feature_names_out_]

    @staticmethod
    def _self_counted(prepared: pd.DataFrame, current: pd.DataFrame, now_account: pd.Series,
                      t: np.ndarray) -> np.ndarray:
        """1 where the prefix's own case is among its account's counted cases."""
        position = current.index.get_indexer(prepared["case_id"])
        own_account = current["account"].to_numpy()[position]
        known = _shifted(current["account_sec"].to_numpy())[position] <= t
        now = now_account.to_numpy()
        return ((own_account == now) & known & pd.notna(now)).astype(float)

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
