"""Benchmark on three real public event logs, side by side with pm4py's and skpm's features.

Runs, per log, the pipeline of ``l2c train`` (the log's mapping, ``PrefixPipeline``,
``training.fit.fit_target`` with its LightGBM models and baselines; no MLflow run) on
the protocol of the predictive process monitoring literature (Teinemaa et al.'s
outcome-oriented and Verenich et al.'s remaining-time benchmarks):

- cases ordered by start; the first 80 % train, the last 20 % test; training events
  are cut at the first test case's start (strict protocol: no training event after it);
- prefixes of length 1 .. min(40, 90th percentile of case length), 10 for traffic fines;
- outcome: ROC AUC pooled over all test prefixes and per prefix length; times: MAE in
  days pooled and per prefix length.

The peers are pm4py's own prefix and feature extraction (``pm4py.ml.get_prefixes_from_log``
and ``pm4py.ml.extract_features_dataframe``) and skpm's aggregation and window encodings
(``benchmarks.skpm_peer``), on the same split, the same prefixes and the same labels,
feeding the same model classes and LightGBM settings. Every feature build is timed.
pm4py and skpm are the ``benchmark`` extra (``pip install -e '.[dev,benchmark]'``);
without them their peers are skipped.

    .venv/bin/python benchmarks/real_logs.py --json
    .venv/bin/python benchmarks/real_logs.py --logs helpdesk --max-cases 1000

Data: ``../shared/data`` (see its README); nothing is downloaded. With ``--json`` the
last line of stdout is one JSON object. The protocol and the figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.skpm_peer import ENCODINGS as SKPM_ENCODINGS  # noqa: E402
from benchmarks.skpm_peer import SkpmEncoding, skpm_available  # noqa: E402
from features.log import EventLog, read_log  # noqa: E402
from features.outcomes import outcome_events  # noqa: E402
from features.schema import LABEL_ONLY_COLUMNS, ROW_COLUMN  # noqa: E402
from features.split import TemporalSplit, case_starts_sorted, horizon_of  # noqa: E402
from models.estimators import IntervalRegressor, WinProbabilityModel  # noqa: E402
from models.metrics import classification_metrics, regression_metrics  # noqa: E402
from models.selection import BASELINE_KINDS  # noqa: E402
from models.targets import TARGETS, Target  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import TrainingData, build_training_data  # noqa: E402
from training.fit import TargetResult, fit_target, regression_base  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
MAPPINGS = ROOT / "benchmarks" / "mappings"
MAX_PREFIX_CAP = 40
#: the least number of labelled test prefixes (and, for AUC, of each class) per length
MIN_PER_LENGTH = 20
BOOTSTRAP_RESAMPLES = 200

err = Console(stderr=True)


@dataclass(frozen=True)
class PaymentAnchor:
    """The data README's payment delay for traffic fines, which a mapping cannot express:
    days from the notification (or, for fines handed over on the spot, the creation) plus
    the due days to the first payment. The mapping's invoice role takes the *earliest* of
    its activities, which would always be the creation."""

    notification: str
    creation: str
    payment: str
    due_days: float


@dataclass(frozen=True)
class CreditCollectionRule:
    """The outcome-oriented benchmark's own traffic-fines label (Teinemaa et al.): a fine
    is positive when ``positive`` occurs, its prefixes stop before that event, and fines
    whose last event is ``incomplete_last`` (sent, nothing known since) are left out.
    Every other fine (paid, dismissed, appealed) is negative."""

    positive: str
    incomplete_last: str


@dataclass(frozen=True)
class LogSpec:
    """One benchmark log: its file, its mapping, its targets and its protocol choices."""

    name: str
    file: str
    targets: tuple[str, ...]
    fixed_max_prefix: int | None = None
    #: keep only cases whose last event starting with this prefix decides the outcome
    decision_prefix: str | None = None
    #: drop cases started within the 95th-percentile decision time of the extraction
    decision_horizon: bool = False
    payment_anchor: PaymentAnchor | None = None
    credit_rule: CreditCollectionRule | None = None
    #: peer features are built on at most this many training cases (sampled, seeded)
    peer_max_train_cases: int | None = None

    @property
    def mapping(self) -> Path:
        return MAPPINGS / f"{self.name}.yaml"


LOGS: dict[str, LogSpec] = {
    "bpic2012": LogSpec("bpic2012", "bpic2012/BPI_Challenge_2012.xes.gz", ("outcome",),
                        decision_prefix="O_"),
    "helpdesk": LogSpec("helpdesk", "helpdesk/helpdesk.xes.gz", ("remaining_time",)),
    "traffic_fines": LogSpec(
        "traffic_fines", "traffic_fines/traffic_fines_full.csv.gz",
        ("payment_delay", "outcome", "credit_collection"), fixed_max_prefix=10,
        decision_horizon=True,
        payment_anchor=PaymentAnchor("Insert Fine Notification", "Create Fine", "Payment", 60.0),
        credit_rule=CreditCollectionRule("Send for Credit Collection", "Send Fine")),
}

#: the literature's traffic-fines task, trained and judged like our win model
CREDIT_COLLECTION = replace(
    TARGETS["outcome"], name="credit_collection", label="credit_collection",
    usable="credit_usable", registered_name="l2c-credit-collection",
    description="P(the fine is sent for credit collection)")
BENCH_TARGETS: dict[str, Target] = {**TARGETS, CREDIT_COLLECTION.name: CREDIT_COLLECTION}


@dataclass
class Prepared:
    """Everything one log's targets share: the split, our features and the labels."""

    spec: LogSpec
    log: EventLog
    split: TemporalSplit
    max_prefix_len: int
    horizon_days: float | None
    data: TrainingData
    features_s: float


# ---------------------------------------------------------------------------- the log
def load(spec: LogSpec, data_dir: Path, max_cases: int | None) -> EventLog:
    """Read through the mapping, apply the README's case filter, keep the earliest cases."""
    log = read_log(data_dir / spec.file, spec.mapping)
    events = log.events
    if spec.decision_prefix is not None:
        events = events[events["case_id"].isin(decided_cases(events, log, spec.decision_prefix))]
    if max_cases is not None:
        first = case_starts_sorted(events).index[:max_cases]
        events = events[events["case_id"].isin(first)]
    log.events = events.reset_index(drop=True)
    return log


def decided_cases(events: pd.DataFrame, log: EventLog, prefix: str) -> pd.Index:
    """Cases whose last event named ``prefix...`` is a won or lost activity (BPIC 2012:
    the last offer event is accepted, declined or cancelled; others have no label)."""
    roles = log.mapping.roles
    ordered = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    last = ordered[ordered["activity"].str.startswith(prefix)].groupby("case_id").tail(1)
    return pd.Index(last.loc[last["activity"].isin([*roles.won, *roles.lost]), "case_id"])


def max_prefix_length(events: pd.DataFrame, spec: LogSpec) -> int:
    """min(40, 90th percentile of case length) unless the log fixes it (traffic fines: 10)."""
    if spec.fixed_max_prefix is not None:
        return spec.fixed_max_prefix
    q90 = events.groupby("case_id").size().quantile(0.9)
    return int(min(MAX_PREFIX_CAP, math.ceil(q90)))


def decision_horizon(log: EventLog) -> pd.Timedelta | None:
    """95th percentile of start -> deciding outcome event, on cases of the log's first half.

    Cases younger than this at extraction mostly have no outcome yet; only their quick
    outcomes (here: prompt payments) would be labelled, so they are left out of train and
    test, as ``l2c train``'s evaluation horizon does (``features.split.horizon_of``, the
    same quantile, here of the time to the outcome as the mapping's rule decides it).
    """
    events = log.events
    start = events.groupby("case_id")["timestamp"].min()
    decided = outcome_events(events, log.mapping.roles)["outcome_time"].reindex(start.index)
    # the deciding event as the mapping's outcome rule finds it, and no end to wait for
    none = pd.Series(pd.NaT, index=start.index, dtype=start.dtype)
    return horizon_of(pd.DataFrame({"start": start, "end": none, "decided": decided}))


# -------------------------------------------------------------------- our features
def prepare(spec: LogSpec, log: EventLog, config: TrainConfig) -> Prepared:
    """``training.data.build_training_data`` (what ``l2c train`` runs on a read log) with
    this protocol's prefix lengths and horizon, and the log's own label rules.

    Temporal split, pipeline fitted on the cut training events, features and labels of
    the whole log, training rows = training cases' prefixes ending before the split, test
    rows = test cases' prefixes; time-ordered fit/valid/cal blocks.
    """
    events = log.events
    k_max = max_prefix_length(events, spec)
    horizon = decision_horizon(log) if spec.decision_horizon else None
    data = build_training_data(
        log, config.model_copy(update={"max_prefix_len": k_max}), horizon,
        fingerprint={"cases": int(events["case_id"].nunique()), "events": len(events)})
    if spec.payment_anchor is not None:
        data.train_labels = anchored_payment_labels(data.train_labels, events,
                                                    spec.payment_anchor)
        data.test_labels = anchored_payment_labels(data.test_labels, events,
                                                   spec.payment_anchor)
    if spec.credit_rule is not None:
        data.train_labels = credit_collection_labels(data.train_labels, events,
                                                     spec.credit_rule)
        data.test_labels = credit_collection_labels(data.test_labels, events, spec.credit_rule)
    return Prepared(spec=spec, log=log, split=data.split, max_prefix_len=k_max,
                    horizon_days=None if horizon is None else horizon / pd.Timedelta(days=1),
                    data=data, features_s=data.features_s)


def anchored_payment_labels(labels: pd.DataFrame, events: pd.DataFrame,
                            anchor: PaymentAnchor) -> pd.DataFrame:
    """Payment delay per the data README: first payment - (notification or creation + due).

    Usable for prefixes that end before the first payment; unpaid cases are censored
    (left out, as ``Target.rows`` does). Rows align with ``labels`` by (case, length).
    """
    def first(activity: str, what: str = "timestamp") -> pd.Series:
        hits = events[events["activity"] == activity]
        return hits.groupby("case_id")[what].min()

    cases = labels["case_id"]
    notified = cases.map(first(anchor.notification))
    due = notified.fillna(cases.map(first(anchor.creation))) + pd.Timedelta(days=anchor.due_days)
    paid = cases.map(first(anchor.payment))
    ordered = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    position = ordered.groupby("case_id").cumcount() + 1
    k_pay = cases.map(position[ordered["activity"] == anchor.payment]
                      .groupby(ordered["case_id"]).min())
    out = labels.copy()
    out["payment_delay_days"] = ((paid - due) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    out["payment_censored"] = paid.isna().to_numpy()
    out["payment_usable"] = (paid.notna() & (out["prefix_len"] < k_pay)).to_numpy()
    return out


def credit_collection_labels(labels: pd.DataFrame, events: pd.DataFrame,
                             rule: CreditCollectionRule) -> pd.DataFrame:
    """The literature's label per prefix row (rows align with ``labels`` by case, length).

    ``credit_collection``: 1 when the fine's events include ``rule.positive``, else 0;
    missing for fines whose last event is ``rule.incomplete_last``. ``credit_usable``:
    labelled, and for a positive fine the prefix ends before its first ``positive`` event.
    """
    ordered = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    position = ordered.groupby("case_id").cumcount() + 1
    k_positive = (position[ordered["activity"] == rule.positive]
                  .groupby(ordered["case_id"]).min())
    last = ordered.groupby("case_id")["activity"].last()
    cases = labels["case_id"]
    k_pos = cases.map(k_positive).to_numpy(dtype=float)
    left_out = cases.map(last.eq(rule.incomplete_last)).fillna(False).to_numpy(dtype=bool)
    positive = ~np.isnan(k_pos)
    out = labels.copy()
    out["credit_collection"] = np.where(left_out, np.nan, positive.astype(float))
    with np.errstate(invalid="ignore"):
        before = ~positive | (out["prefix_len"].to_numpy() < k_pos)
    out["credit_usable"] = ~left_out & before
    return out


# ------------------------------------------------------------------- the peer (pm4py)
def pm4py_available() -> bool:
    try:
        import pm4py  # noqa: F401
    except ImportError:
        return False
    return True


def peer_columns(events: pd.DataFrame) -> tuple[list[str], list[str]]:
    """String and numeric event columns the log fills, for pm4py's one-hot/last encoding."""
    skip = {"case_id", "timestamp", ROW_COLUMN, *LABEL_ONLY_COLUMNS}
    filled = [c for c in events.columns if c not in skip and events[c].notna().any()]
    numeric = [c for c in filled if pd.api.types.is_numeric_dtype(events[c])]
    return [c for c in filled if c not in numeric], numeric


def peer_features(events: pd.DataFrame, max_prefix_len: int) -> pd.DataFrame:
    """One row per (case, k) from pm4py: prefixes by ``get_prefixes_from_log``, features by
    ``extract_features_dataframe`` (activity/resource/category counts, last numbers).

    pm4py's DataFrame extraction has no time feature; the prefix's elapsed days (an event
    column, read as its last value) and k are added so the peer is not blind to time.
    """
    import pm4py

    strings, numbers = peer_columns(events)
    df = events.sort_values(["case_id", "timestamp", ROW_COLUMN], kind="stable")
    df = df[["case_id", "timestamp", *strings, *numbers]].copy()
    for column in strings:
        df[column] = df[column].astype("object")
    df["elapsed_days"] = ((df["timestamp"] - df.groupby("case_id")["timestamp"].transform("min"))
                          / pd.Timedelta(days=1))
    df = df.rename(columns={"case_id": "case:concept:name", "activity": "concept:name",
                            "timestamp": "time:timestamp", "resource": "org:resource"})
    rename = {"activity": "concept:name", "resource": "org:resource"}
    str_attrs = [rename.get(c, c) for c in strings]
    num_attrs = [*numbers, "elapsed_days"]
    length = df.groupby("case:concept:name")["concept:name"].transform("size")
    parts = []
    for k in range(1, max_prefix_len + 1):
        prefixes = pm4py.ml.get_prefixes_from_log(df[length >= k], k,
                                                  case_id_key="case:concept:name")
        if prefixes.empty:
            break
        table = pm4py.ml.extract_features_dataframe(
            prefixes, str_ev_attr=str_attrs, num_ev_attr=num_attrs,
            case_id_key="case:concept:name", include_case_id=True, count_occurrences=True)
        parts.append(table.assign(prefix_len=k))
    out = pd.concat(parts, ignore_index=True).rename(columns={"case:concept:name": "case_id"})
    counts = [c for c in out.columns if c not in {"case_id", "prefix_len", *num_attrs}]
    out = out.fillna({c: 0.0 for c in counts})  # a value absent from all prefixes of length k
    # pm4py orders columns through a set (hash-seeded): sort them, or LightGBM's column
    # sampling would draw different features from run to run
    return out[["case_id", "prefix_len", *sorted(c for c in out.columns
                                                 if c not in ("case_id", "prefix_len"))]]


def align(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test columns as in training (values unseen in training dropped, absent ones 0)."""
    counts = [c for c in train.columns if c not in test.columns]
    test = test.reindex(columns=train.columns).fillna({c: 0.0 for c in counts})
    return train, test


@dataclass
class PeerData:
    train: pd.DataFrame  # keys + features, training cases cut at the split
    test: pd.DataFrame
    features_s: float
    train_cases: int
    sampled: bool
    name: str = "pm4py"


def build_peer(prep: Prepared, seed: int) -> PeerData:
    """pm4py features of the cut training log (optionally a seeded sample of its cases,
    see ``LogSpec.peer_max_train_cases``) and of the test cases, timed."""
    train_events = prep.split.train
    cases = train_events["case_id"].unique()
    cap = prep.spec.peer_max_train_cases
    sampled = cap is not None and len(cases) > cap
    if sampled:
        keep = np.random.default_rng(seed).choice(cases, size=cap, replace=False)
        train_events = train_events[train_events["case_id"].isin(keep)]
    started = time.perf_counter()
    train = peer_features(train_events, prep.max_prefix_len)
    test = peer_features(prep.split.test, prep.max_prefix_len)
    train, test = align(train, test)
    safe = {c: f"f{i}_{re.sub(r'[^0-9A-Za-z_]', '_', c)}" for i, c in enumerate(train.columns)
            if c not in ("case_id", "prefix_len")}  # LightGBM refuses JSON characters
    # one consolidated block each (pm4py's frames are built column by column)
    train, test = train.rename(columns=safe).copy(), test.rename(columns=safe).copy()
    return PeerData(train=train, test=test, features_s=time.perf_counter() - started,
                    train_cases=int(train_events["case_id"].nunique()), sampled=sampled)


def build_skpm_peer(prep: Prepared, encoding: str) -> PeerData:
    """skpm's encoding (``benchmarks.skpm_peer``) learnt on the cut training log, applied
    to it and to the test cases, timed; the same prefixes as ours and pm4py's."""
    started = time.perf_counter()
    fitted = SkpmEncoding(encoding).fit(prep.split.train)
    train = fitted.transform(prep.split.train, prep.max_prefix_len)
    test = fitted.transform(prep.split.test, prep.max_prefix_len)
    return PeerData(train=train, test=test, features_s=time.perf_counter() - started,
                    train_cases=int(prep.split.train["case_id"].nunique()), sampled=False,
                    name=encoding)


PEERS = ("pm4py", *SKPM_ENCODINGS)


def build_named_peer(prep: Prepared, name: str, seed: int) -> PeerData:
    """The features of the peer ``name`` (one of :data:`PEERS`)."""
    return build_peer(prep, seed) if name == "pm4py" else build_skpm_peer(prep, name)


@dataclass
class CachedPeer:
    """A peer whose test predictions were stored by an earlier run (``--peer-cache``)."""

    name: str
    features_s: float


#: ``--peer-cache``: a folder of peers' test predictions, so runs that change only our
#: features need not refit every peer; keyed by log, target, peer, seed and case limit
PEER_CACHE: dict[str, Path | int | None] = {"dir": None, "max_cases": None}


#: the code that turns a peer's features into predictions: stored predictions made by
#: other model code (a changed estimator, baseline or fit) are not reused
MODEL_SOURCES = ("models/estimators.py", "models/baselines.py", "models/selection.py",
                 "training/fit.py")


def model_fingerprint() -> str:
    """A short hash of :data:`MODEL_SOURCES`, part of every stored prediction's name."""
    digest = hashlib.sha256()
    for source in MODEL_SOURCES:
        digest.update((ROOT / source).read_bytes())
    return digest.hexdigest()[:10]


def _cache_file(prep: Prepared, target: Target, name: str, config: TrainConfig) -> Path | None:
    folder = PEER_CACHE["dir"]
    if not isinstance(folder, Path):
        return None
    return folder / (f"{prep.spec.name}-{target.name}-{name}-seed{config.seed}-"
                     f"cases{PEER_CACHE['max_cases']}-models{model_fingerprint()}.npz")


def _timing_file(prep: Prepared, name: str) -> Path | None:
    folder = PEER_CACHE["dir"]
    if not isinstance(folder, Path):
        return None
    return folder / f"{prep.spec.name}-{name}-cases{PEER_CACHE['max_cases']}.json"


def build_one_peer(prep: Prepared, name: str, targets: list[Target],
                   seed: int) -> PeerData | CachedPeer:
    """The peer's features, or its stored predictions when ``--peer-cache`` holds them
    for every target."""
    timing = _timing_file(prep, name)
    wanted = [_cache_file(prep, t, name, TrainConfig(seed=seed)) for t in targets]
    if timing is not None and timing.is_file() and all(f is not None and f.is_file()
                                                       for f in wanted):
        err.print(f"[{prep.spec.name}] {name}: stored predictions ({timing.parent})")
        return CachedPeer(name, json.loads(timing.read_text())["features_s"])
    peer = build_named_peer(prep, name, seed)
    err.print(f"[{prep.spec.name}] {name} features in {peer.features_s:.1f}s")
    if timing is not None:
        timing.write_text(json.dumps({"features_s": peer.features_s}))
    return peer


def build_peers(prep: Prepared, names: list[str], seed: int
                ) -> dict[str, PeerData | CachedPeer]:
    targets = [BENCH_TARGETS[t] for t in prep.spec.targets]
    return {name: build_one_peer(prep, name, targets, seed) for name in names}


def available_peers(requested: list[str]) -> list[str]:
    """The requested peers whose library is installed (the others named on stderr)."""
    have = {"pm4py": pm4py_available(), "skpm": skpm_available()}
    missing = sorted({n.split("_")[0] for n in requested if not have[n.split("_")[0]]})
    if missing:
        err.print(f"not installed (pip install -e '.[benchmark]'): {missing}; "
                  "their peers are skipped", markup=False)
    return [n for n in requested if have[n.split("_")[0]]]


def peer_matrix(keys: pd.DataFrame, peer: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Peer feature rows for our (case, k) rows, in our order; mask of rows it has."""
    merged = keys[["case_id", "prefix_len"]].merge(peer, on=["case_id", "prefix_len"],
                                                   how="left", indicator=True)
    found = (merged.pop("_merge") == "both").to_numpy()
    X = merged.drop(columns=["case_id"]).astype("float64")
    return X.reset_index(drop=True), found


def fit_peer(prep: Prepared, peer: PeerData, target: Target,
             config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same model class, settings and fit/valid/cal blocks as ours, on pm4py features.

    Returns test predictions, test labels and test prefix lengths.
    """
    data = prep.data
    rows = target.rows(data.train_labels)
    X_all, found = peer_matrix(data.train_frame[rows], peer.train)
    if not peer.sampled and not found.all():
        raise RuntimeError(f"{peer.name} built no features for {int((~found).sum())} "
                           "training rows")
    y_all = data.train_labels.loc[rows, target.label].to_numpy(dtype=float)[found]
    X_all = X_all[found].reset_index(drop=True)
    blocks = data.blocks[rows][found]
    folds = [(X_all[blocks == b], y_all[blocks == b]) for b in range(3)]
    test_rows = target.rows(data.test_labels)
    X_test, test_found = peer_matrix(data.test_frame[test_rows], peer.test)
    if not test_found.all():
        raise RuntimeError(f"{peer.name} built no features for {int((~test_found).sum())} "
                           "test rows")
    y_test = data.test_labels.loc[test_rows, target.label].to_numpy(dtype=float)
    k_test = data.test_frame.loc[test_rows, "prefix_len"].to_numpy()
    if target.kind == "classification":
        model = WinProbabilityModel(config.lgbm, config.calibration, config.seed,
                                    base=config.win_base)
        (X_fit, y_fit), (X_valid, y_valid), (X_cal, y_cal) = folds
        model.fit(X_fit, y_fit.astype(int), X_valid, y_valid.astype(int), X_cal, y_cal.astype(int))
        return model.predict_proba(X_test), y_test, k_test
    base, params = regression_base(target)
    regressor = IntervalRegressor({**params, **config.lgbm}, config.interval_alpha,
                                  config.seed, base=base)
    regressor.fit(*(part for f in folds for part in f))
    return regressor.predict(X_test), y_test, k_test


# ------------------------------------------------------------------------ metrics
def per_length(k: np.ndarray, y: np.ndarray, pred: np.ndarray,
               kind: str) -> dict[str, float]:
    """Metric per prefix length (lengths with too few rows, or one class, left out)."""
    out: dict[str, float] = {}
    for length in np.unique(k):
        inside = k == length
        if inside.sum() < MIN_PER_LENGTH:
            continue
        if kind == "classification":
            if min((y[inside] == 1).sum(), (y[inside] == 0).sum()) < 2:
                continue
            out[str(int(length))] = classification_metrics(y[inside], pred[inside])["auc"]
        else:
            out[str(int(length))] = regression_metrics(y[inside], pred[inside])["mae_days"]
    return {key: round(value, 4) for key, value in out.items()}


def main_metric(target: Target, y: np.ndarray, pred: np.ndarray,
                weight: np.ndarray | None = None) -> float:
    if target.kind == "classification":
        return float(roc_auc_score(y, pred, sample_weight=weight))
    return float(np.average(np.abs(y - pred), weights=weight))


def paired_difference_ci(target: Target, cases: np.ndarray, y: np.ndarray, ours: np.ndarray,
                         peer: np.ndarray, seed: int,
                         resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95 % interval of metric(ours) - metric(peer) over test cases drawn with replacement
    (see :func:`paired_bootstrap_ci`)."""
    return paired_bootstrap_ci(lambda p, w: main_metric(target, y, p, w), cases, ours, peer,
                               seed, resamples)


def paired_bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray | None], float],
                        cases: np.ndarray, ours: np.ndarray, peer: np.ndarray, seed: int,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95 % percentile interval of ``metric(ours) - metric(peer)``, resampling cases.

    Prefixes of one case share its label and most of its features, so rows are not
    independent draws: whole test cases are drawn with replacement (a case drawn twice
    weighs its rows twice). Both predictions are scored on the same draw (paired), which
    cancels the draw's difficulty and leaves the difference. ``metric(pred, weight)``.
    """
    codes, n_cases = pd.factorize(cases)[0], len(pd.unique(cases))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        weight = rng.multinomial(n_cases, np.full(n_cases, 1 / n_cases))[codes]
        diffs.append(metric(ours, weight) - metric(peer, weight))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


def mean_over_lengths(per_length_figures: dict[str, float], lengths: range = range(1, 6)
                      ) -> float | None:
    """Mean of the per-length figures over ``lengths`` (early prefixes: 1-5), or None
    when none of them is reported."""
    found = [per_length_figures[str(k)] for k in lengths if str(k) in per_length_figures]
    return round(float(np.mean(found)), 4) if found else None


def best_of(target: Target, figures: dict[str, float]) -> str | None:
    """The name with the best figure (highest AUC, lowest MAE)."""
    if not figures:
        return None
    pick = max if target.higher_is_better else min
    return pick(figures, key=figures.__getitem__)


# ------------------------------------------------------------------------ ablation
#: our feature groups the ablation can leave out: (encoder class in features.pipeline,
#: the parameters that switch the group off)
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "lags": ("SequenceEncoder", {"lags": ()}),
    "transitions": ("SequenceEncoder", {"max_transitions": 0}),
    "recency": ("SequenceEncoder", {"max_recency": 0}),
    "changing": ("ChangingAttributeEncoder", {"columns": ()}),
}



def ablate(group: str) -> None:
    """Build ``PrefixPipeline``'s encoder of ``group`` with that group switched off (for
    this process: the benchmark's ablation rows, never the product)."""
    import features.pipeline as pipeline

    name, off = ABLATIONS[group]
    build = getattr(pipeline, name)

    def switched_off(*args: Any, **kwargs: Any) -> Any:
        return build(*args, **{**kwargs, **off})

    setattr(pipeline, name, switched_off)


# ------------------------------------------------------------------------- running
def run_ours(prep: Prepared, target: Target, config: TrainConfig
             ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Our model and our baselines on one target: the figures and the test predictions."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn/LightGBM chatter on feature names
        result: TargetResult = fit_target(prep.data, target, config)
    fit_s = time.perf_counter() - started
    test = result.test
    pred_col = "p_win" if target.kind == "classification" else "prediction"
    test = test.assign(pred=test[pred_col])
    k, y, pred = test["prefix_len"].to_numpy(), test["y"].to_numpy(), test["pred"].to_numpy()
    out: dict[str, Any] = {
        "metric": target.main_metric,
        "ours": result.metrics[target.main_metric],
        "baselines": {name: values[target.main_metric]
                      for name, values in result.baselines.items()},
        "shipped_kind": result.kind, "kind_reason": result.kind_reason,
        # the candidates on the latest training block, which chose the kind shipped
        "latest_block": {kind: {m: _r(v) for m, v in values.items()
                                if m in ("auc", "log_loss", "mae_days")}
                         for kind, values in result.selection.items()},
        "shipped_worse_than_a_baseline_on_latest_block": _worse_than_baseline(result),
        "ece": _r(result.metrics.get("ece")),
        "ece_sampling_floor": _r(result.metrics.get("ece_sampling_floor")),
        "ours_per_length": per_length(k, y, pred, target.kind),
        "test_prefixes": len(test), "test_cases": int(test["case_id"].nunique()),
        "train_prefixes": int(target.rows(prep.data.train_labels).sum()),
        "fit_s": round(fit_s, 2),
    }
    out["ours_mean_1_5"] = mean_over_lengths(out["ours_per_length"])
    if target.kind == "classification":
        out["positive_rate_test"] = float(np.mean(y))
    return out, test


def peer_predictions(prep: Prepared, target: Target, peer: PeerData | CachedPeer,
                     config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The peer's test predictions, labels and lengths (stored ones when cached), and
    the seconds its model took."""
    started = time.perf_counter()
    cached = _cache_file(prep, target, peer.name, config)
    if isinstance(peer, CachedPeer):
        stored = np.load(cached)
        return stored["pred"], stored["y"], stored["k"], 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_pred, p_y, p_k = fit_peer(prep, peer, target, config)
    if cached is not None:
        np.savez(cached, pred=p_pred, y=p_y, k=p_k)
    return p_pred, p_y, p_k, time.perf_counter() - started


def compare(out: dict[str, Any], test: pd.DataFrame, target: Target,
            predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]],
            config: TrainConfig) -> dict[str, Any]:
    """Each peer's figures beside ours, the best peer, and the paired intervals.

    ``best_peer`` is the peer with the best test figure (the hardest comparison for us);
    ``diff_ci_low``/``diff_ci_high`` bound ours - best peer (AUC: above 0 = we lead;
    MAE: below 0 = we lead).
    """
    k, y, pred = test["prefix_len"].to_numpy(), test["y"].to_numpy(), test["pred"].to_numpy()
    cases = test["case_id"].to_numpy()
    out["peers"] = {}
    for name, (p_pred, p_y, p_k, fit_s) in predictions.items():
        if not (np.array_equal(p_y, y) and np.array_equal(p_k, k)):
            raise RuntimeError(f"{name}'s test rows are not ours: no paired comparison")
        low, high = paired_difference_ci(target, cases, y, pred, p_pred, config.seed)
        figures = per_length(p_k, p_y, p_pred, target.kind)
        out["peers"][name] = {
            "metric": main_metric(target, p_y, p_pred), "per_length": figures,
            "mean_1_5": mean_over_lengths(figures),
            "ours_minus_peer_ci95": [round(low, 4), round(high, 4)],
            "fit_s": round(fit_s, 2)}
    best = best_of(target, {n: p["metric"] for n, p in out["peers"].items()})
    if best is not None:
        chosen = out["peers"][best]
        out["best_peer"] = {"name": best, "metric": _r(chosen["metric"])}
        out["diff_ci_low"], out["diff_ci_high"] = chosen["ours_minus_peer_ci95"]
        # the names of the first version of this benchmark (one peer)
        out["peer"], out["ours_minus_peer_ci95"] = chosen["metric"], chosen["ours_minus_peer_ci95"]
        out["peer_per_length"] = chosen["per_length"]
    return out


def run_target(prep: Prepared, target: Target, config: TrainConfig,
               peers: dict[str, PeerData | CachedPeer] | PeerData | None) -> dict[str, Any]:
    """Our model, our baselines and every peer given, for one target of one log."""
    out, test = run_ours(prep, target, config)
    if isinstance(peers, PeerData):
        peers = {peers.name: peers}
    predictions = {name: peer_predictions(prep, target, peer, config)
                   for name, peer in (peers or {}).items()}
    return compare(out, test, target, predictions, config)


def _worse_than_baseline(result: TargetResult) -> bool:
    """Whether the shipped kind is worse, on the latest training block, than a baseline
    (not the logistic regression, a learnt model) on the target's main metric, or (win
    model) than the base rate on log loss: what ``models.selection`` rules out."""
    scores = result.selection
    if not scores:
        return False
    shipped = scores[result.kind]
    metric = result.target.main_metric
    higher = result.target.higher_is_better
    for kind, values in scores.items():
        if kind not in BASELINE_KINDS or kind == result.kind:
            continue
        if (shipped[metric] < values[metric]) if higher else (shipped[metric] > values[metric]):
            return True
        if kind == "base_rate" and shipped["log_loss"] > values["log_loss"]:
            return True
    return False


#: ``--partial-json``: after each peer, the comparisons so far are appended here
PARTIAL: dict[str, Path | None] = {"file": None}


def run_log(spec: LogSpec, data_dir: Path, max_cases: int | None, peer_names: list[str],
            config: TrainConfig, targets: list[str] | None = None,
            peers_only: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    log = load(spec, data_dir, max_cases)
    read_s = time.perf_counter() - started
    err.print(f"[{spec.name}] read {log.events['case_id'].nunique()} cases in {read_s:.1f}s")
    prep = prepare(spec, log, config)
    err.print(f"[{spec.name}] our features in {prep.features_s:.1f}s "
              f"(prefixes 1..{prep.max_prefix_len}, horizon {prep.horizon_days})")
    chosen = [BENCH_TARGETS[t] for t in spec.targets if not targets or t in targets]
    ours = {}
    for target in [] if peers_only else chosen:
        ours[target.name] = run_ours(prep, target, config)
        err.print(f"[{spec.name}] {target.name}: ours {ours[target.name][0]['ours']:.4f}")
    # one peer at a time: its features, its models on every target, then freed
    predictions: dict[str, dict[str, Any]] = {t.name: {} for t in chosen}
    timed = {}
    for name in peer_names:
        peer = build_one_peer(prep, name, chosen, config.seed)
        timed[name] = round(peer.features_s, 2)
        for target in chosen:
            p_pred, p_y, p_k, fit_s = peer_predictions(prep, target, peer, config)
            predictions[target.name][name] = (p_pred, p_y, p_k, fit_s)
            err.print(f"[{spec.name}] {target.name}: {name} "
                      f"{main_metric(target, p_y, p_pred):.4f}")
        del peer
        if PARTIAL["file"] is not None and not peers_only:  # what is done so far
            done = {t.name: compare(dict(ours[t.name][0]), ours[t.name][1], t,
                                    predictions[t.name], config) for t in chosen}
            with PARTIAL["file"].open("a") as handle:
                handle.write(json.dumps({spec.name: {"targets": done, "peers_features_s":
                                                     timed}}, default=float) + "\n")
    results = {}
    for target in [] if peers_only else chosen:
        out, test = ours[target.name]
        results[target.name] = compare(out, test, target, predictions[target.name], config)
        best = results[target.name].get("best_peer")
        err.print(f"[{spec.name}] {target.name}: ours {out['ours']:.4f}, best peer {best}, "
                  f"ours - best peer {results[target.name].get('ours_minus_peer_ci95')}")
    split = prep.split
    return {
        "cases": int(log.events["case_id"].nunique()), "events": len(log.events),
        "train_cases": int(split.train["case_id"].nunique()),
        "test_cases": int(split.test["case_id"].nunique()),
        "left_out_too_recent": len(split.too_recent),
        "horizon_days": None if prep.horizon_days is None else round(prep.horizon_days, 1),
        "split_time": split.split_time.isoformat(),
        "max_prefix_len": prep.max_prefix_len,
        "read_s": round(read_s, 2), "features_s": round(prep.features_s, 2),
        "peers_features_s": timed,
        "fastest_peer_features_s": min(timed.values()) if timed else None,
        "peer_features_s": timed.get("pm4py"),
        "targets": results,
    }


# -------------------------------------------------------------------------- output
def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per log and target: ours, the best peer (name, metric) and the interval of ours -
    best peer, every peer's figure, the mean over prefix lengths 1-5; then the details."""
    out: dict[str, Any] = {}
    for name, res in results.items():
        row: dict[str, Any] = {"targets": {}}
        for target, t in res["targets"].items():
            row["targets"][target] = {
                "metric": t["metric"], "ours": _r(t["ours"]),
                "best_baseline": _r((max if t["metric"] == "auc" else min)(
                    t["baselines"].values())),
                "best_peer": t.get("best_peer"),
                "diff_ci_low": t.get("diff_ci_low"), "diff_ci_high": t.get("diff_ci_high"),
                "peers": {n: _r(p["metric"]) for n, p in t["peers"].items()},
                "ours_mean_1_5": t["ours_mean_1_5"],
                "peers_mean_1_5": {n: p["mean_1_5"] for n, p in t["peers"].items()},
                "ours_per_length": t["ours_per_length"],
                "best_peer_per_length": t.get("peer_per_length"),
            }
        row |= {"features_s": res["features_s"],
                "fastest_peer_features_s": res["fastest_peer_features_s"],
                "peers_features_s": res["peers_features_s"]}
        row["details"] = {k: v for k, v in res.items() if k != "targets"} | {
            target: {k: v for k, v in values.items() if k not in ("metric",)}
            for target, values in res["targets"].items()}
        out[name] = row
    return out


def table(results: dict[str, dict[str, Any]]) -> Table:
    grid = Table(title="Real public logs: ours vs baselines vs peers' features "
                       "(same split, prefixes, labels, models)")
    for column in ("log", "target", "metric", "method", "pooled", "mean k=1-5",
                   "ours - it, 95% CI", "features s"):
        grid.add_column(column, justify="left" if column in ("log", "target", "metric",
                                                             "method") else "right")
    for name, res in results.items():
        for target, t in res["targets"].items():
            best = (max if t["metric"] == "auc" else min)(t["baselines"].values())
            mean = t["ours_mean_1_5"]
            grid.add_row(name, target, t["metric"], f"ours ({t['shipped_kind']})",
                         f"{t['ours']:.4f}", "-" if mean is None else f"{mean:.4f}", "",
                         f"{res['features_s']:.1f}")
            grid.add_row("", "", "", "best own baseline", f"{best:.4f}", "", "", "")
            for peer, p in t["peers"].items():
                ci = p["ours_minus_peer_ci95"]
                star = " (best)" if t.get("best_peer", {}).get("name") == peer else ""
                grid.add_row("", "", "", peer + star, f"{p['metric']:.4f}",
                             "-" if p["mean_1_5"] is None else f"{p['mean_1_5']:.4f}",
                             f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
                             f"{res['peers_features_s'][peer]:.1f}")
    return grid


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="folder with the logs (default: ../shared/data)")
    parser.add_argument("--logs", nargs="+", choices=list(LOGS), default=list(LOGS),
                        help="which logs to run (default: all three)")
    parser.add_argument("--targets", nargs="+", choices=list(BENCH_TARGETS), default=None,
                        help="only these targets (default: each log's own)")
    parser.add_argument("--max-cases", type=int, default=None,
                        help="keep only the earliest N cases of each log (smoke runs)")
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS),
                        help="which peers to run (default: all)")
    parser.add_argument("--no-peer", action="store_true", help="skip every peer")
    parser.add_argument("--partial-json", type=Path, default=None,
                        help="append each log's comparisons so far here after every peer")
    parser.add_argument("--peers-only", action="store_true",
                        help="with --peer-cache: only store the peers' predictions")
    parser.add_argument("--peer-cache", type=Path, default=None,
                        help="store peers' test predictions here, and reuse them when "
                             "stored (runs that change only our features)")
    parser.add_argument("--seed", type=int, default=0, help="models' seed (default 0)")
    parser.add_argument("--without", nargs="+", choices=list(ABLATIONS), default=[],
                        help="leave these of our feature groups out (ablation)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object as the last line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = [LOGS[n].file for n in args.logs if not (args.data_dir / LOGS[n].file).is_file()]
    if missing:
        err.print(f"missing log file(s) under {args.data_dir}: {missing}")
        return 2
    peer_names = [] if args.no_peer else available_peers(args.peers)
    for group in args.without:
        ablate(group)
    if args.peer_cache is not None:
        args.peer_cache.mkdir(parents=True, exist_ok=True)
        PEER_CACHE.update({"dir": args.peer_cache, "max_cases": args.max_cases})
    config = TrainConfig(learning_curve=False, seed=args.seed)  # the shipped models
    started = time.perf_counter()
    PARTIAL["file"] = args.partial_json
    if args.peers_only and args.peer_cache is None:
        err.print("--peers-only needs --peer-cache (where the predictions are stored)")
        return 2
    results = {name: run_log(LOGS[name], args.data_dir, args.max_cases, peer_names, config,
                             args.targets, args.peers_only)
               for name in args.logs}
    if args.peers_only:
        return 0
    wall_s = time.perf_counter() - started
    Console(width=170).print(table(results))
    print(f"wall time {wall_s:.0f} s")
    if args.json:
        print(json.dumps(summary(results) | {"wall_s": round(wall_s, 1)}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
