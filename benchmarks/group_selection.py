"""Experiment: leave feature groups out when the validation block says they hurt.

Issue 22 names "hyperparameters chosen on the validation block within a bounded budget";
whether a feature group is used is one. The rule tried here is the same on every log
(no per-log switch):

1. the candidate groups are read off the fitted ``PrefixPipeline`` (one per encoder,
   with the finer groups the encoders name: the sequence encoder's lags, transitions and
   recencies; the time encoder's position in the fiscal quarter; the changing attributes'
   counts of each value); the last-state group is never a candidate, as the baselines
   key on it;
2. the model of the target is fitted on the fit block and early-stopped on the valid
   block with all candidates, and without each remaining group in turn, at two seeds;
3. a group is left out only when leaving it out improves the valid block's metric at
   both seeds *and* the paired bootstrap over the valid block's cases (the two seeds'
   predictions averaged) puts the 95 % interval of the improvement above zero; greedy,
   the best such group per round, at most ``--rounds`` rounds.

The test block is never read by the selection. The test figures then compare the
shipped model of ``training.fit.fit_target`` with all features against the same model
without the selected groups, at every seed asked for (selection seeds ``s`` and ``s+1``
for test seed ``s``).

    .venv/bin/python benchmarks/group_selection.py --logs helpdesk --seeds 0 1
    .venv/bin/python benchmarks/group_selection.py --simulator --seeds 0 1

Results: docs/benchmarks.md ("Feature-group selection on the validation block").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.real_logs import (  # noqa: E402
    BENCH_TARGETS,
    DEFAULT_DATA_DIR,
    LOGS,
    load,
    main_metric,
    mean_over_lengths,
    paired_bootstrap_ci,
    per_length,
    prepare,
)
from features.pipeline import PrefixPipeline  # noqa: E402
from models.estimators import (  # noqa: E402
    DEFAULT_PARAMS,
    REGRESSION_PARAMS,
    WinProbabilityModel,
    _fit_lgbm,
)
from models.targets import TARGETS, Target  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import TrainingData  # noqa: E402
from training.fit import fit_target, regression_base  # noqa: E402

#: never candidates: the baselines (stage rate, median by last activity) key on them
PROTECTED = ("last_state",)
ENCODER_GROUPS = {
    "AttributeEncoder": "attributes", "DateAttributeEncoder": "date_attributes",
    "ActivityCountEncoder": "activity_counts", "NumericHistoryEncoder": "numeric_history",
    "LastStateEncoder": "last_state", "TimeEncoder": "time",
    "ConformanceEncoder": "conformance", "SequenceEncoder": "sequence",
    "ChangingAttributeEncoder": "changes", "CrossCaseEncoder": "cross_case",
}


def candidate_groups(pipeline: PrefixPipeline) -> dict[str, list[str]]:
    """Group name -> its features, for every group with at least one feature."""
    groups: dict[str, list[str]] = {}
    for enc in pipeline.encoders_:
        kind = type(enc).__name__
        base = ENCODER_GROUPS.get(kind, kind)
        sub: dict[str, str] = {}
        if kind == "SequenceEncoder":
            sub |= {n: "lags" for n in enc.lag_names_}
            sub |= {n: "transitions" for n in enc.transition_names_}
            sub |= {n: "recency" for n in enc.recency_names_}
        elif kind == "TimeEncoder":
            sub |= {n: "quarter_position" for n in enc.feature_groups()}
        elif kind == "ChangingAttributeEncoder":
            sub |= {n: "value_counts" for names in enc.count_names_.values() for n in names}
        for name in enc.feature_names_out_:
            groups.setdefault(sub.get(name, base), []).append(name)
    return groups


@dataclass
class Folds:
    X: list[pd.DataFrame]  # fit, valid, cal
    y: list[np.ndarray]
    valid_cases: np.ndarray
    summaries: list[str] = field(default_factory=list)  # penalised as fit_target does


def folds_of(data: TrainingData, target: Target, max_fit_cases: int | None = None,
             seed: int = 0) -> Folds:
    """The fit, valid and cal blocks; with ``max_fit_cases`` the fit block is a seeded
    sample of that many of its cases (the selection's budget), the others whole."""
    rows = target.rows(data.train_labels)
    X = data.pipeline.feature_matrix(data.train_frame)
    y = data.train_labels[target.label].to_numpy(dtype=float)
    masks = [rows & (data.blocks == b) for b in range(3)]
    cases = data.train_frame["case_id"].to_numpy()
    fit_cases = pd.unique(cases[masks[0]])
    if max_fit_cases is not None and len(fit_cases) > max_fit_cases:
        picked = np.random.default_rng(seed).choice(fit_cases, max_fit_cases, replace=False)
        masks[0] = masks[0] & np.isin(cases, picked)
    return Folds([X[m] for m in masks], [y[m] for m in masks],
                 data.train_frame.loc[masks[1], "case_id"].to_numpy(),
                 data.pipeline.summary_names())


def metric(target: Target, y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """Higher is better: the benchmark's AUC, or minus its MAE."""
    value = main_metric(target, y, p, w)
    return value if target.higher_is_better else -value


def valid_predictions(target: Target, folds: Folds, columns: list[str], seed: int,
                      config: TrainConfig) -> np.ndarray:
    """The target's model on ``columns``: fitted on the fit block, early-stopped on the
    valid block; its predictions of the valid block (uncalibrated)."""
    X_fit, X_valid = folds.X[0][columns], folds.X[1][columns]
    y_fit, y_valid = folds.y[0], folds.y[1]
    lgbm = config.lgbm_params(columns, folds.summaries)
    if target.kind == "classification":
        model = WinProbabilityModel(lgbm, "none", seed, base=config.win_base,
                                    refit=False, select=False)
        model.fit(X_fit, y_fit.astype(int), X_valid, y_valid.astype(int), X_valid,
                  y_valid.astype(int))  # no calibration, no refit: the cal block is unused
        return model.raw_proba(X_valid)
    base, params = regression_base(target)
    params = {**DEFAULT_PARAMS, **REGRESSION_PARAMS, **params, **lgbm}
    init = (None, None)
    if base is not None:
        base = copy.deepcopy(base).fit(X_fit, y_fit)
        init = (base.predict(X_fit), base.predict(X_valid))
    model = _fit_lgbm(lgb.LGBMRegressor(**params, objective="l1", random_state=seed),
                      X_fit, y_fit, X_valid, y_valid, *init)
    out = model.predict(X_valid)
    return out if base is None else out + init[1]


def bootstrap_gain(target: Target, y: np.ndarray, cases: np.ndarray, without: np.ndarray,
                   full: np.ndarray, seed: int, resamples: int) -> tuple[float, float]:
    """95 % interval of metric(without) - metric(full), resampling whole valid cases."""
    return paired_bootstrap_ci(lambda p, w: metric(target, y, p, w), cases, without, full,
                               seed, resamples)


@dataclass
class Selection:
    dropped: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    fits: int = 0
    seconds: float = 0.0


def select_groups(target: Target, folds: Folds, groups: dict[str, list[str]],
                  seeds: tuple[int, ...], config: TrainConfig, rounds: int = 3,
                  resamples: int = 200) -> Selection:
    started = time.perf_counter()
    out = Selection()
    y_valid = folds.y[1]
    candidates = [g for g in groups if g not in PROTECTED]
    all_columns = list(folds.X[0].columns)
    for _ in range(rounds):
        kept = [c for c in all_columns
                if not any(c in groups[g] for g in out.dropped)]
        full = [valid_predictions(target, folds, kept, s, config) for s in seeds]
        out.fits += len(seeds)
        full_mean = np.mean(full, axis=0)
        scores = {}
        for group in [g for g in candidates if g not in out.dropped]:
            columns = [c for c in kept if c not in groups[group]]
            if not columns:
                continue
            without = [valid_predictions(target, folds, columns, s, config) for s in seeds]
            out.fits += len(seeds)
            per_seed = [metric(target, y_valid, w) - metric(target, y_valid, f)
                        for w, f in zip(without, full, strict=True)]
            low, high = bootstrap_gain(target, y_valid, folds.valid_cases,
                                       np.mean(without, axis=0), full_mean, seeds[0],
                                       resamples)
            scores[group] = {"gain_per_seed": [round(g, 5) for g in per_seed],
                             "gain_ci95": [round(low, 5), round(high, 5)],
                             "passes": bool(min(per_seed) > 0 and low > 0)}
        passing = [g for g, s in scores.items() if s["passes"]]
        best = max(passing, key=lambda g: float(np.mean(scores[g]["gain_per_seed"])),
                   default=None)
        out.rounds.append({"full_valid": round(metric(target, y_valid, full_mean), 5),
                           "scores": scores, "dropped": best})
        print(f"  round {len(out.rounds)} ({time.perf_counter() - started:.0f}s): "
              f"{ {g: v['gain_per_seed'] for g, v in scores.items()} } -> {best}",
              file=sys.stderr)
        if best is None:
            break
        out.dropped.append(best)
    out.seconds = time.perf_counter() - started
    return out


def narrowed(data: TrainingData, columns: list[str]) -> TrainingData:
    """The same training data whose pipeline's matrix holds only ``columns``."""
    pipe = copy.copy(data.pipeline)
    pipe.feature_names_out_ = [c for c in data.pipeline.feature_names_out_ if c in columns]
    pipe.schema_ = {c: data.pipeline.schema_[c] for c in pipe.feature_names_out_}
    out = copy.copy(data)
    out.pipeline = pipe
    return out


def test_figures(data: TrainingData, target: Target, config: TrainConfig) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_target(data, target, config)
    test = result.test
    pred = test["p_win" if target.kind == "classification" else "prediction"].to_numpy()
    lengths = per_length(test["prefix_len"].to_numpy(), test["y"].to_numpy(), pred, target.kind)
    out = {"metric": round(result.metrics[target.main_metric], 5), "kind": result.kind,
           "mean_1_5": mean_over_lengths(lengths), "per_length": lengths}
    if result.oracle:
        out["oracle"] = {k: round(v, 5) for k, v in result.oracle.items()
                         if k in ("auc", "auc_ratio", "mae_days", "mae_ratio")}
    return {"figures": out, "test": test.assign(pred=pred)}


def run_target(data: TrainingData, target: Target, seeds: list[int], rounds: int,
               store: Path | None, label: str, n_select: int = 2,
               max_fit_cases: int | None = None, skip_unchanged: bool = False
               ) -> dict[str, Any]:
    groups = candidate_groups(data.pipeline)
    folds = folds_of(data, target, max_fit_cases)
    out: dict[str, Any] = {"groups": {g: len(c) for g, c in groups.items()},
                           "rows": [len(y) for y in folds.y], "by_seed": {}}
    for seed in seeds:
        config = TrainConfig(learning_curve=False, seed=seed)
        selection = select_groups(target, folds, groups,
                                  tuple(range(seed, seed + n_select)), config, rounds)
        print(f"[{label}] {target.name} seed {seed}: dropped {selection.dropped} "
              f"({selection.fits} fits, {selection.seconds:.0f}s)", file=sys.stderr)
        row: dict[str, Any] = {"selection": {
            "dropped": selection.dropped, "rounds": selection.rounds,
            "fits": selection.fits, "seconds": round(selection.seconds, 1)}}
        if not selection.dropped and skip_unchanged:  # the shipped model, unchanged
            print(f"[{label}] {target.name} seed {seed}: nothing left out, test not refitted",
                  file=sys.stderr)
            out["by_seed"][str(seed)] = row
            continue
        full = test_figures(data, target, config)
        row["all_groups"] = full["figures"]
        if selection.dropped:
            gone = {c for g in selection.dropped for c in groups[g]}
            keep = [c for c in data.pipeline.feature_names_out_ if c not in gone]
            chosen = test_figures(narrowed(data, keep), target, config)
        else:
            chosen = full
        row["selected"] = chosen["figures"]
        print(f"[{label}] {target.name} seed {seed}: test all {full['figures']['metric']}, "
              f"selected {row['selected']['metric']}", file=sys.stderr)
        if store is not None:
            for name, result in (("all", full), ("selected", chosen)):
                t = result["test"]
                np.savez(store / f"{label}-{target.name}-seed{seed}-{name}.npz",
                         pred=t["pred"].to_numpy(), y=t["y"].to_numpy(),
                         k=t["prefix_len"].to_numpy(), case=t["case_id"].astype(str).to_numpy())
        out["by_seed"][str(seed)] = row
    return out


#: ``--skip-unchanged``: no test fit where the selection leaves nothing out
OPTIONS = {"skip_unchanged": False}


def run_log(name: str, seeds: list[int], rounds: int, targets: list[str] | None,
            store: Path | None, n_select: int = 2, max_fit_cases: int | None = None
            ) -> dict[str, Any]:
    spec = LOGS[name]
    log = load(spec, DEFAULT_DATA_DIR, None)
    data = prepare(spec, log, TrainConfig(learning_curve=False)).data
    chosen = [t for t in spec.targets if not targets or t in targets]
    return {t: run_target(data, BENCH_TARGETS[t], seeds, rounds, store, name, n_select,
                          max_fit_cases, OPTIONS["skip_unchanged"]) for t in chosen}


def run_simulator(seeds: list[int], rounds: int, cases: int, sim_seed: int,
                  store: Path | None, n_select: int = 2,
                  max_fit_cases: int | None = None) -> dict[str, Any]:
    from benchmarks.quality import simulate_to
    from training.data import prepare_training_data

    config = TrainConfig(learning_curve=False)
    with tempfile.TemporaryDirectory(prefix="l2c-groups-") as tmp:
        path = simulate_to(Path(tmp), cases, sim_seed)
        data = prepare_training_data(path, None, config, list(TARGETS.values()))
    return {t.name: run_target(data, t, seeds, rounds, store, "simulator", n_select,
                               max_fit_cases, OPTIONS["skip_unchanged"])
            for t in TARGETS.values()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", nargs="*", choices=list(LOGS), default=[])
    parser.add_argument("--targets", nargs="+", default=None)
    parser.add_argument("--simulator", action="store_true")
    parser.add_argument("--cases", type=int, default=20_000, help="simulated cases")
    parser.add_argument("--sim-seed", type=int, default=7)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--selection-seeds", type=int, default=2,
                        help="seeds the selection fits each candidate with (s, s+1, ...)")
    parser.add_argument("--max-fit-cases", type=int, default=None,
                        help="the selection fits on at most this many fit-block cases")
    parser.add_argument("--store", type=Path, default=None,
                        help="store each test prediction here (for paired intervals)")
    parser.add_argument("--skip-unchanged", action="store_true",
                        help="no test fits where nothing is left out (the shipped model)")
    args = parser.parse_args(argv)
    OPTIONS["skip_unchanged"] = args.skip_unchanged
    if args.store is not None:
        args.store.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.logs:
        results[name] = run_log(name, args.seeds, args.rounds, args.targets, args.store,
                                args.selection_seeds, args.max_fit_cases)
    if args.simulator:
        results["simulator"] = run_simulator(args.seeds, args.rounds, args.cases,
                                             args.sim_seed, args.store, args.selection_seeds,
                                             args.max_fit_cases)
    print(json.dumps(results, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
