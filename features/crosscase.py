"""Cross-case (intercase) features, each computed as of the prefix end only.

A rep's open workload, win rate and cycle time, a region's open pipeline and an
account's history and payment habits come from *other* cases. Each fact about
another case carries the time it became known (the case started, its outcome was
logged, its payment arrived), and a prefix ending at t only counts facts known at or
before t. Queries are vectorised: per group, facts are sorted by time with running
sums, and every prefix looks up its count and sums with one ``searchsorted``.

The fitted encoder keeps a per-case summary of the training log, so a single running
case scored alone still sees its rep's and account's history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from features import small
from features.encoders import Encoded, PrefixEncoder, event_rows
from features.mapping import Roles
from features.outcomes import decide_by_absence, payment_timing
from features.prefixes import EventRows, Lookup, seconds
from features.small import FEW_FACTS

_NEVER = np.iinfo(np.int64).max // 4  # "not (yet) happened": after every query time
DAY_SECONDS = 86400
def running_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` (rows) restarting in every group, as pandas'
    ``groupby(...).cumsum()`` computes them; a few facts in Python
    (``features.small``), with the same bits."""
    if len(values) > FEW_FACTS:
        return pd.DataFrame(values).groupby(groups, sort=False).cumsum().to_numpy()
    return small.running_sums(values, groups)


def _sec_or_never(times: pd.Series) -> np.ndarray:
    known = times.notna().to_numpy()
    out = np.full(len(times), _NEVER, dtype=np.int64)
    if known.any():
        out[known] = seconds(times[known])
    return out


@dataclass
class CaseFacts:
    """Per case (in row order), every fact another case's prefix may need, and its time;
    plus each win/loss event as a change to the counts, with its case's position."""

    ids: np.ndarray
    columns: dict[str, np.ndarray]
    decisions: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, positions: np.ndarray) -> CaseFacts:
        """These cases only, their decisions renumbered to the new positions."""
        renumber = np.full(len(self.ids), -1, dtype=np.int64)
        renumber[positions] = np.arange(len(positions))
        kept = renumber[self.decisions["case"]] >= 0
        decisions = {k: v[kept] for k, v in self.decisions.items()}
        decisions["case"] = renumber[decisions["case"]]
        return CaseFacts(ids=self.ids[positions],
                         columns={k: v[positions] for k, v in self.columns.items()},
                         decisions=decisions)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, index=pd.Index(self.ids, name="case_id"))


def case_facts(rows: EventRows, roles: Roles) -> CaseFacts:
    """The facts of the cases in ``rows`` (their first value of rep/region/account and
    when it appeared, start, end, cycle time, payment) and their win/loss events."""
    cases, sec = rows.cases, rows.sec
    first_rows = cases.first_rows
    facts: dict[str, np.ndarray] = {"start_sec": sec[first_rows]}
    for column in FACT_KINDS:
        values = rows[column]
        first = cases.first_where(~pd.isna(values))
        found = first >= 0
        facts[column] = np.full(len(first), np.nan, dtype=object)
        facts[column][found] = values[first[found]]
        facts[f"{column}_sec"] = np.where(found, sec[first], _NEVER)
    activity = rows["activity"]
    facts["end_sec"] = np.full(len(first_rows), _NEVER, dtype=np.int64)
    if roles.end_activities:
        end = cases.first_where(np.isin(activity, roles.end_activities))
        facts["end_sec"] = np.where(end >= 0, sec[end], _NEVER)
    facts["cycle_days"] = (facts["end_sec"] - facts["start_sec"]) / DAY_SECONDS
    facts["payment_sec"] = np.full(len(first_rows), _NEVER, dtype=np.int64)
    facts["payment_delay_days"] = np.full(len(first_rows), np.nan)
    ids = rows["case_id"][first_rows]
    if roles.payment and np.isin(activity, roles.payment).any():  # else none paid
        pay = payment_timing(rows.frame, roles).reindex(pd.Index(ids))
        facts["payment_sec"] = _sec_or_never(pay["payment_time"])
        facts["payment_delay_days"] = pay["delay_days"].to_numpy(dtype="float64")
    return CaseFacts(ids=np.asarray(ids, dtype=object), columns=facts,
                     decisions=_decision_facts(rows, roles))


def _decision_facts(rows: EventRows, roles: Roles) -> dict[str, np.ndarray]:
    """Each win/loss event as a change to the counts (decided, won) at its own time.

    Under 'any' only a case's first decisive event counts. Under 'last_of_won_lost' a
    later decisive event replaces the earlier verdict from its own time on (it adds
    0 decided and won - previous won), so the past is never rewritten.
    """
    activity = rows["activity"]
    if roles.outcome_rule == "won_else_lost":  # each verdict at the time it is known
        decided = decide_by_absence(rows["case_id"], rows.micros(), activity, roles, None)
        found = decided.row >= 0
        return {"case": np.flatnonzero(found),
                "time_sec": decided.time[found].astype("datetime64[s]").astype("int64"),
                "d_decided": np.ones(int(found.sum())),
                "d_won": decided.won[found].astype("float64")}
    is_won = np.isin(activity, roles.won)
    at = np.flatnonzero(is_won | np.isin(activity, roles.lost))
    case = rows.cases.case_number()[at]
    won = is_won[at].astype("float64")
    follows = np.zeros(len(at), dtype=bool)  # an earlier verdict in the same case
    follows[1:] = case[1:] == case[:-1]
    previous = np.full(len(at), np.nan)
    previous[1:] = won[:-1]
    previous[~follows] = np.nan
    if roles.outcome_rule != "last_of_won_lost":
        first = ~follows
        at, case, won, previous = at[first], case[first], won[first], previous[first]
    return {"case": case, "time_sec": rows.sec[at],
            "d_decided": np.isnan(previous).astype("float64"),
            "d_won": won - np.nan_to_num(previous)}


@dataclass
class AsOf:
    """Facts of one kind sorted by (group, time) with running sums, for as-of lookups.

    Running sums restart in every group, so a group's answers are exact and never move
    when facts of another group change.
    """

    keys: np.ndarray
    sums: np.ndarray  # (n, k) running sums within each group
    span: int

    @classmethod
    def build(cls, codes: np.ndarray, times: np.ndarray, values: np.ndarray, span: int) -> AsOf:
        known = (codes >= 0) & (times < _NEVER)
        # facts later than every query still sort after them within their group
        keys = codes[known] * span + np.minimum(times[known], span - 1)
        order = np.argsort(keys, kind="stable")
        vals = values[known][order].astype("float64")
        vals[np.isnan(vals)] = 0.0
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


#: models pickled before the index was public name it so: they must still load
_AsOf = AsOf

#: seconds from 1900 to 1970: shifts every time >= 0 so (group, time) fits one int64 key
TIME_OFFSET = 2_208_988_800
TIME_SPAN = 2**34  # > any shifted time before the year 2444
#: the fact kinds each grouping column needs
FACT_KINDS = {"rep": ("opened", "closed", "decided", "done"),
          "region": ("opened", "closed"),
          "account": ("opened", "decided", "paid")}


def _shifted(times: np.ndarray) -> np.ndarray:
    return np.where(times < _NEVER, times + TIME_OFFSET, _NEVER)


def facts_by_kind(history: CaseFacts, column: str,
           codes: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(group codes, known-at times, values) of the fact kinds one grouping column needs
    (only those: for one case each array costs a few numpy calls)."""
    ones = np.ones((len(history), 1))
    known = _shifted(history[f"{column}_sec"])
    kinds = FACT_KINDS[column]
    end = (np.maximum(_shifted(history["end_sec"]), known)
           if "closed" in kinds or "done" in kinds else None)
    facts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for kind in kinds:
        if kind == "opened":
            facts[kind] = codes, known, ones
        elif kind == "closed":
            facts[kind] = codes, end, ones
        elif kind == "done":
            facts[kind] = codes, end, np.column_stack((ones[:, 0], history["cycle_days"]))
        elif kind == "paid":
            facts[kind] = (codes, np.maximum(_shifted(history["payment_sec"]), known),
                           np.column_stack((ones[:, 0], history["payment_delay_days"])))
        else:  # decided
            decisions = history.decisions
            position = decisions["case"]
            facts[kind] = (codes[position],
                           np.maximum(_shifted(decisions["time_sec"]), known[position]),
                           np.column_stack((decisions["d_decided"], decisions["d_won"])))
    return facts


def index_key(facts: CaseFacts, column: str, kinds: Collection[str] | None = None
              ) -> tuple[Lookup, dict[str, AsOf]]:
    """The groups of key ``column`` among ``facts`` and the as-of index of each of its
    fact kinds (only ``kinds`` if given): the encoder's history and, in the Dask path,
    a key bucket's."""
    values = facts[column]
    groups = Lookup(pd.unique(values[~pd.isna(values)]))
    codes = groups.positions(values)
    return groups, {kind: AsOf.build(*arrays, TIME_SPAN)
                    for kind, arrays in facts_by_kind(facts, column, codes).items()
                    if kinds is None or kind in kinds}


def _codes_with_new(groups: Lookup, values: np.ndarray, new: dict[object, int]) -> np.ndarray:
    """Group codes of ``values``; a value not in ``groups`` gets the next free code,
    the same for every call sharing ``new``."""
    codes = groups.positions(values)
    unseen = (codes < 0) & ~pd.isna(values)
    if unseen.any():
        inverse, names = pd.factorize(values[unseen])
        fresh = [new.setdefault(name, len(groups) + len(new)) for name in names.tolist()]
        codes[unseen] = np.asarray(fresh, dtype=np.int64)[inverse]
    return codes


@dataclass
class _AsOfQuery:
    """As-of sums for the queries ``q`` of one grouping column: the stored history's,
    plus the given cases' facts, minus the stored facts of those same cases.

    Each fact kind's index of the given cases is built once and reused by every query
    time; the subtraction is skipped when no given case is stored (a new case at the
    case scored alone) or when all stored facts are replaced (training), and otherwise rides in the
    given cases' index as negated facts.
    """

    stored: dict[str, AsOf]
    added: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    removed: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    whole_history_given: bool | np.ndarray  # per row when cases are scored alone
    q: np.ndarray  # the queries' group codes in the stored history
    q_given: np.ndarray  # ... among the given cases (the same unless scored alone)
    now: np.ndarray  # each query's own time: most sums are asked for at it
    built: dict[str, tuple[AsOf, AsOf | None]] = field(default_factory=dict)
    at_now: dict[str, np.ndarray] = field(default_factory=dict)

    def _indexes(self, kind: str) -> tuple[AsOf, AsOf | None]:
        """The given cases' index and, when they replace stored facts, the index of
        those (None when there is nothing to subtract)."""
        if kind not in self.built:
            added, removed = self.added[kind], self.removed.get(kind)
            replacing = removed is not None and len(removed[0]) > 0
            if replacing and self.whole_history_given is False:
                # the given facts and the stored ones they replace, negated, in one index:
                # one build and one lookup instead of two of each (a scored case is
                # usually stored: it was running when the models were trained)
                codes, times, values = (np.concatenate(pair) for pair in zip(
                    added, (removed[0], removed[1], -removed[2]), strict=True))
                self.built[kind] = AsOf.build(codes, times, values, TIME_SPAN), None
            else:
                self.built[kind] = (AsOf.build(*added, TIME_SPAN),
                                    AsOf.build(*removed, TIME_SPAN) if replacing else None)
        return self.built[kind]

    def __call__(self, kind: str, times: np.ndarray | None = None) -> np.ndarray:
        """Sums of ``kind`` as of ``times`` (by default ``now``, asked once per kind)."""
        if times is None:
            if kind not in self.at_now:
                self.at_now[kind] = self(kind, self.now)
            return self.at_now[kind]
        plus, minus = self._indexes(kind)
        given = plus.at(self.q_given, times)
        whole = self.whole_history_given
        if whole is True:  # stored facts all replaced: skip the arithmetic
            return given
        result = given + self.stored[kind].at(self.q, times)
        if minus is not None:
            result = result - minus.at(self.q_given, times)
        # a case that is every stored case gets the bits it gets alone (no s + p - s)
        return result if whole is False else np.where(whole[:, None], given, result)


def column_features(out: Encoded, column: str, at: Callable[..., np.ndarray], roles: Roles,
                    t: np.ndarray, recent: int, own: Callable[[], np.ndarray]) -> None:
    """The features of one key column (rep, region, account) from its as-of sums:
    ``at(kind)`` at each prefix's time, ``at(kind, times)`` at other times; ``own``:
    how often the prefix's own case is counted among the account's cases. One rule for
    the encoder and for a history looked up elsewhere (the Dask path)."""
    if column in ("rep", "region") and roles.end_activities:
        out[f"{column}_open_cases"] = (at("opened") - at("closed"))[:, 0]
    if column == "rep":
        out["rep_started_recent"] = (at("opened") - at("opened", t - recent))[:, 0]
        decided = at("decided")
        out["rep_decided_cases"] = decided[:, 0]
        out["rep_win_rate"] = _ratio(decided)
        out["rep_mean_cycle_days"] = _ratio(at("done"))
    if column == "account":
        out["account_prior_cases"] = at("opened")[:, 0] - own()
        out["account_won_cases"] = at("decided")[:, 1]
        paid = at("paid")
        out["account_paid_cases"] = paid[:, 0]
        out["account_mean_payment_delay_days"] = _ratio(paid)


def probe_key(column: str, roles: Roles, recent: int
              ) -> tuple[list[str], list[tuple[str, int]]]:
    """The one rule (``column_features``) of key ``column`` run on a probe row: the names
    of its features, and the lookups it makes as (fact kind, seconds added to the
    prefix's time). The names and the Dask key join's lookups are read off the rule,
    so neither can part from the values it computes."""
    t = np.array([10 * TIME_SPAN // 11], dtype=np.int64)
    asked: list[tuple[str, int]] = []

    def at(kind: str, times: np.ndarray | None = None) -> np.ndarray:
        need = (kind, 0 if times is None else int(times[0] - t[0]))
        if need not in asked:
            asked.append(need)
        return np.zeros((1, 2))

    out: Encoded = {}
    column_features(out, column, at, roles, t, recent, lambda: np.zeros(1))
    return list(out), asked


def key_feature_names(keys: Sequence[str], roles: Roles) -> list[str]:
    """The features of the key columns ``keys`` (``probe_key``). The open-case counts
    come first, as they did when every key was always built (a column's place decides
    which trees' column samples draw it)."""
    names = [name for column in keys for name in probe_key(column, roles, 0)[0]]
    return sorted(names, key=lambda name: not name.endswith("_open_cases"))


def readable_keys(filled: Callable[[str], bool], roles: Roles) -> tuple[str, ...]:
    """The key columns (rep, region, account) that are ``filled`` and have features
    under ``roles`` (a region without end activities has none): the encoder's keys, and
    whether it is built at all (``features.pruning``)."""
    return tuple(column for column in FACT_KINDS
                 if filled(column) and key_feature_names([column], roles))


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

    #: facts of other cases, known at the prefix end, some from events after their own
    #: kept prefixes: the encoder reads every event given
    reads_other_cases = True
    #: the key columns the training log fills (``fit``); the default is for encoders
    #: pickled before per-key pruning: all keys
    keys_: tuple[str, ...] = tuple(FACT_KINDS)

    def __init__(self, roles: Roles | None = None, recent_days: float = 30.0) -> None:
        self.roles = roles
        self.recent_days = recent_days

    def fit(self, prepared: pd.DataFrame | EventRows, y: object = None) -> CrossCaseEncoder:
        roles = self.resolved_roles()
        facts = case_facts(event_rows(prepared), roles)
        # a key no training case fills (Helpdesk has no rep) would give columns missing on
        # every row, and one whose features the roles rule out (a region without end
        # activities) none: neither is indexed nor looked up
        self.keys_ = readable_keys(lambda column: bool(pd.notna(facts[column]).any()), roles)
        self.set_facts(facts)
        self.feature_names_out_ = key_feature_names(self.keys_, roles)
        return self

    def resolved_roles(self) -> Roles:
        """The roles given, or the default ones (also for the Dask path's key join)."""
        return self.roles if self.roles is not None else Roles()

    def set_history(self, prepared: pd.DataFrame | EventRows) -> CrossCaseEncoder:
        """Remember these cases' facts for scoring cases that arrive without history."""
        return self.set_facts(case_facts(event_rows(prepared), self.resolved_roles()))

    def set_facts(self, facts: CaseFacts) -> CrossCaseEncoder:
        """Remember these cases' facts (built from events, or joined from partitions by
        the Dask path) and index them per key."""
        self.facts_ = facts
        self.cases_ = Lookup(facts.ids)
        self.groups_: dict[str, Lookup] = {}
        self.index_: dict[str, dict[str, AsOf]] = {}
        for column in self.keys_:
            self.groups_[column], self.index_[column] = index_key(facts, column)
        return self

    @property
    def history_(self) -> pd.DataFrame:
        """The stored facts, one row per case (for reading; the encoder uses ``facts_``)."""
        return self.facts_.frame()

    def encode(self, rows: EventRows) -> Encoded:
        check_is_fitted(self, "index_")
        roles = self.resolved_roles()
        current = case_facts(rows, roles)
        found = self.cases_.positions(current.ids)
        given_stored = np.flatnonzero(found >= 0)  # given cases the history holds too
        stored = found[given_stored]  # a new case: none (skip the O(history) take)
        replaced = self.facts_.take(stored) if len(stored) else None
        part = _Alone.of(rows) if rows.each_case_alone else None
        whole = len(stored) == len(self.facts_) if part is None else part.whole_history(
            given_stored, len(self.facts_))
        t = rows.sec + TIME_OFFSET
        recent = int(self.recent_days * DAY_SECONDS)
        out: Encoded = {}
        for column in self.keys_:
            query_values = rows.last_known(column)
            groups, new = self.groups_[column], {}
            added = _codes_with_new(groups, current[column], new)
            q = _codes_with_new(groups, query_values, new)
            removed = None if replaced is None else groups.positions(replaced[column])
            q_given = q
            if part is not None:  # each case its own groups among the given cases
                width = len(groups) + len(new)
                added, q_given = part.cases(added, width), part.rows(q, width)
                if removed is not None:
                    removed = part.cases(removed, width, given_stored)
            at = _AsOfQuery(
                stored=self.index_[column],
                added=facts_by_kind(current, column, added),
                removed={} if replaced is None else facts_by_kind(replaced, column, removed),
                whole_history_given=whole,
                q=q, q_given=q_given, now=t)
            column_features(out, column, at, roles, t, recent,
                            lambda v=query_values: self.self_counted(rows, current, v, t))
        return {name: out[name] for name in self.feature_names_out_}

    @staticmethod
    def self_counted(rows: EventRows, current: CaseFacts, now_account: np.ndarray,
                      t: np.ndarray) -> np.ndarray:
        """1 where the prefix's own case is among its account's counted cases."""
        position = rows.cases.case_number()
        own_account = current["account"][position]
        known = _shifted(current["account_sec"])[position] <= t
        return ((own_account == now_account) & known & ~pd.isna(now_account)).astype(float)

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


@dataclass
class _Alone:
    """Each given case in a range of group codes of its own, for scoring cases alone.

    A case sees the stored history and itself, never another given case: shifting its
    group codes by ``case * width`` gives it groups of its own, so its as-of sums (and
    their floating-point order) are those of the case encoded alone.
    """

    of_row: np.ndarray  # each row's case

    @classmethod
    def of(cls, rows: EventRows) -> _Alone:
        return cls(of_row=rows.cases.case_number())

    def cases(self, codes: np.ndarray, width: int,
              which: np.ndarray | None = None) -> np.ndarray:
        """Codes of the given cases (or of the cases at ``which``) within their ranges."""
        own = np.arange(len(codes)) if which is None else which
        return _within(codes, own, width)

    def rows(self, codes: np.ndarray, width: int) -> np.ndarray:
        return _within(codes, self.of_row, width)

    def whole_history(self, given_stored: np.ndarray, stored_cases: int) -> bool | np.ndarray:
        """Per row, whether its case alone is every stored case (False when none is):
        for the other cases that stored case still counts."""
        if not len(self.of_row) or stored_cases > 1:
            return False
        if stored_cases == 0:  # an empty history: every case holds all of it
            return np.ones(len(self.of_row), dtype=bool)
        return bool(len(given_stored)) and self.of_row == given_stored[0]


def _within(codes: np.ndarray, parts: np.ndarray, width: int) -> np.ndarray:
    """Group codes moved into each part's own range (missing stays -1)."""
    return np.where(codes >= 0, codes + parts * width, -1)


def _ratio(sums: np.ndarray) -> np.ndarray:
    """Mean of the second column over the count in the first; missing when no facts."""
    count = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, sums[:, 1] / np.where(count > 0, count, 1), np.nan)
