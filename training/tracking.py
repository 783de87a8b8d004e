"""Log one training run to MLflow: data, mapping, parameters, metrics, plots, models.

Everything is computed before the run starts; if logging fails halfway (an error,
Ctrl-C), the versions registered so far and the run are deleted, so the tracking store
never holds a half-written run or a promotable model of one. Models are registered only
once everything else is logged, and the run is marked FINISHED last: a process killed
outright (``kill -9``) leaves a RUNNING run, whose versions promotion and serving refuse
(``models.registry.unpromotable_reason``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib
import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import features
import models
from models.pyfunc import BUNDLE_ARTIFACT, BundlePyfunc, input_example
from training.config import TrainConfig
from training.data import TrainingData
from training.fit import TargetResult
from training.plots import (
    calibration_plot,
    metric_by_prefix_plot,
    residual_plot,
    shap_summary_plot,
)

_RUNTIME_PACKAGES = ("pandas", "numpy", "pyarrow", "scikit-learn", "lightgbm", "mlflow",
                     "pydantic", "pyyaml", "joblib", "scipy")


def pip_requirements() -> list[str]:
    """Exact versions of what the bundle needs at load time (and nothing of the tests)."""
    pins = []
    for name in _RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # pragma: no cover - a runtime dependency is missing
            continue
    return pins


def log_training_run(data: TrainingData, results: list[TargetResult], config: TrainConfig,
                     mapping_file: str | Path | None) -> tuple[str, dict[str, int]]:
    """Returns the run id and the registered version per target."""
    mlflow.set_experiment(config.experiment)
    run = mlflow.start_run(run_name=f"train-{Path(data.fingerprint['path']).name}")
    registered: list[tuple[str, str]] = []
    try:
        model_uris = _log_everything(data, results, config, mapping_file)
        versions = {result.target.name: _register(result, model_uris[result.target.name],
                                                  data, registered)
                    for result in results}
    except BaseException as exc:
        _release_frames(exc)
        _discard(run.info.run_id, registered)
        raise
    mlflow.end_run()
    return run.info.run_id, versions


def _release_frames(exc: BaseException) -> None:
    """Drop the locals of the frames an error or Ctrl-C passed through.

    A Ctrl-C inside MLflow can stop a SQLite read half way; the frames kept alive by
    the traceback then hold that session's lock, and every write of the clean-up waits
    for it and fails with ``database is locked``. The traceback's lines stay intact."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__context__
    gc.collect()


def _discard(run_id: str, registered: list[tuple[str, str]]) -> None:
    """Delete what an interrupted run registered, then the run itself.

    Each step is tried on its own: a failing delete must not hide the error (or the
    Ctrl-C) that got us here, and the run's FAILED status alone already keeps its
    versions from being promoted."""
    client = MlflowClient()
    try:  # also a version whose registration was cut short after the registry had it
        found = client.search_model_versions(f"run_id = '{run_id}'")
        registered = [*registered, *((v.name, str(v.version)) for v in found)]
    except Exception:  # best effort: the versions listed so far are still deleted
        pass
    for name, number in dict.fromkeys(registered):
        try:
            client.delete_model_version(name, number)
        except Exception:  # best effort: unpromotable anyway
            continue
    try:
        mlflow.end_run(status="FAILED")
        client.delete_run(run_id)
    except Exception:  # best effort, as above
        return


def _log_everything(data: TrainingData, results: list[TargetResult], config: TrainConfig,
                    mapping_file: str | Path | None) -> dict[str, str]:
    """Log everything of the run; returns each target's logged model URI (unregistered)."""
    fp = data.fingerprint
    mlflow.log_params({**config.flat_params(),
                       **{f"data.{k}": v for k, v in fp.items()},
                       "data.mapping": data.log.mapping.name,
                       "split.time": data.split.split_time.isoformat(),
                       "split.too_recent_cases": len(data.split.too_recent),
                       "features.count": len(data.pipeline.feature_names_out_)})
    mlflow.set_tags({"targets": ",".join(r.target.name for r in results),
                     "data.sha256": fp["sha256"],
                     "data.leaky_columns": ",".join(sorted({f.column for f in data.leaks}))
                     or "none found"})
    mlflow.log_dict({"findings": [dataclasses.asdict(f) for f in data.leaks],
                     "how": "features.leakage: a column whose first-event value separates "
                            "the outcome almost perfectly, or that changes at the outcome "
                            "event and hardly elsewhere; mark it roles.label_only"},
                    "data/leakage.json")
    dataset = mlflow.data.from_pandas(
        data.log.events.drop(columns="source_row"), source=fp["path"],
        name=Path(fp["path"]).name, digest=fp["sha256"][:16])
    mlflow.log_input(dataset, context="training")
    mlflow.log_dict(fp, "data/fingerprint.json")
    mlflow.log_dict(data.log.mapping.model_dump(mode="json"), "data/mapping.json")
    if mapping_file is not None:
        mlflow.log_artifact(str(mapping_file), "data")
    mlflow.log_dict({"rows_in": data.log.report.rows_in,
                     "rows_quarantined": dict(data.log.report.quarantined)},
                    "data/validation.json")
    mlflow.log_dict({"features": data.pipeline.schema_,
                     "readable": data.pipeline.readable_names()}, "features/schema.json")
    _log_evaluation_set(data)
    mlflow.log_metric("features.seconds", data.features_s)  # pipeline fit + whole-log transform
    mlflow.set_tags({"l2c.process": config.process or data.log.mapping.name,
                     **{f"skipped.{name}": why[:4000] for name, why in data.skipped.items()}})
    model_uris = {}
    for result in results:
        mlflow.log_metrics(result.flat_metrics())
        mlflow.set_tags(_kind_tags(result, prefix=f"{result.target.name}."))
        if result.learning_curve:
            _log_learning_curve(result)
        _log_plots(result, data)
        model_uris[result.target.name] = _log_model(result, data)
    return model_uris


def _kind_tags(result: TargetResult, prefix: str = "") -> dict[str, str]:
    """What was shipped and why, the low-data flag and, for a win model, the calibration
    applied (MLflow tags hold 8000 chars)."""
    tags = {f"{prefix}kind": result.kind, f"{prefix}kind_reason": result.kind_reason[:7000],
            f"{prefix}low_data": result.low_data or "no"}
    model = result.bundle.model
    if getattr(model, "calibration_used_", None):
        drift = getattr(model, "drift_", 0.0)
        tags[f"{prefix}calibration"] = model.calibration_used_ + (
            f" (the latest block's level: {drift:+.3f} log-odds)" if drift else "")
    return tags


def _log_learning_curve(result: TargetResult) -> None:
    """The learning curve as a table (JSON) and a plot, and its points as metrics."""
    name = result.target.name
    curve = result.learning_curve
    mlflow.log_dict({"target": name, "metric": result.target.main_metric, "points": curve},
                    f"learning_curve/{name}.json")
    for point in curve:
        mlflow.log_metric(f"{name}.learning_curve.{result.target.main_metric}",
                          point["metric"], step=int(point["percent"]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["cases"] for p in curve], [p["metric"] for p in curve], marker="o")
    ax.set_xlabel("training cases")
    ax.set_ylabel(f"test {result.target.main_metric}")
    ax.set_title(f"{name}: learning curve")
    fig.tight_layout()
    mlflow.log_figure(fig, f"plots/{name}_learning_curve.png")
    plt.close(fig)


def _log_evaluation_set(data: TrainingData) -> None:
    """What promotion needs to score any model on this run's test cases."""
    with tempfile.TemporaryDirectory() as tmp:
        events_file = Path(tmp) / "events.parquet"
        data.log.events.to_parquet(events_file, index=False)
        mlflow.log_artifact(str(events_file), "evaluation")
    mlflow.log_dict({"split_time": data.split.split_time.isoformat(),
                     "test_cases": sorted(data.split.test["case_id"].unique().tolist())},
                    "evaluation/split.json")


def _log_plots(result: TargetResult, data: TrainingData) -> None:
    name = result.target.name
    test = result.test
    figures = []
    if result.target.kind == "classification":
        figures.append((calibration_plot(test["y"], test["p_win"], "win probability"),
                        f"plots/{name}_calibration.png"))
        base = {k: v["auc"] for k, v in result.baselines.items()}
        figures.append((metric_by_prefix_plot(result.buckets, "auc", base, "AUC by prefix"),
                        f"plots/{name}_auc_by_prefix.png"))
    else:
        base = {k: v["mae_days"] for k, v in result.baselines.items()}
        figures.append((metric_by_prefix_plot(result.buckets, "mae_days", base,
                                              f"{name}: MAE by prefix"),
                        f"plots/{name}_mae_by_prefix.png"))
        figures.append((residual_plot(test, name), f"plots/{name}_residuals.png"))
    bundle = result.bundle
    frame = bundle.pipeline.feature_matrix(data.test_frame[result.target.rows(data.test_labels)])
    sample = frame.sample(min(len(frame), 1000), random_state=0)
    if len(sample):
        values = bundle.contributions(sample)[:, :-1]
        figures.append((shap_summary_plot(values, sample, f"{name}: SHAP summary"),
                        f"plots/{name}_shap_summary.png"))
    for fig, path in figures:
        mlflow.log_figure(fig, path)
        plt.close(fig)


def _log_model(result: TargetResult, data: TrainingData) -> str:
    """Log the bundle as a pyfunc model of the run (not registered yet); its URI."""
    bundle = result.bundle
    example_cases = data.split.test["case_id"].drop_duplicates().head(3)
    example_events = data.log.events[data.log.events["case_id"].isin(example_cases)]
    example = input_example(example_events.groupby("case_id").head(4), bundle.mapping)
    output = BundlePyfunc.output_for(bundle, example)  # raises if the example scores nothing
    signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.joblib"
        joblib.dump(bundle, path)
        model_info = mlflow.pyfunc.log_model(
            name=result.target.name,
            python_model=BundlePyfunc(),
            artifacts={BUNDLE_ARTIFACT: str(path)},
            code_paths=[str(Path(features.__file__).parent), str(Path(models.__file__).parent)],
            pip_requirements=pip_requirements(),
            signature=signature,
            input_example=example,
            metadata={"target": result.target.name,
                      "metrics": json.loads(json.dumps(result.metrics, default=float))},
        )
    return model_info.model_uri


def _register(result: TargetResult, model_uri: str, data: TrainingData,
              registered: list[tuple[str, str]]) -> int:
    """Register a logged model and tag the version; ``registered`` learns of it at once,
    so an interruption between here and the end of the run can delete it."""
    name = result.bundle.info.get("registered_name", result.target.registered_name)
    version = mlflow.register_model(model_uri, name).version
    registered.append((name, str(version)))
    client = MlflowClient()
    for key, value in result.metrics.items():
        if np.isfinite(value):
            client.set_model_version_tag(name, str(version), f"metric.{key}", f"{value:.6g}")
    for key, value in _kind_tags(result).items():
        client.set_model_version_tag(name, str(version), key, value)
    client.set_model_version_tag(name, str(version), "data.sha256", data.fingerprint["sha256"])
    return int(version)


def run_metrics_table(results: list[TargetResult]) -> list[dict[str, Any]]:
    """Rows of (target, metric, model, best baseline, oracle) for the closing table."""
    rows = []
    for result in results:
        metric_names = (["auc", "log_loss", "brier", "ece"] if result.target.kind ==
                        "classification" else ["mae_days", "rmse_days", "coverage_80"])
        for metric in metric_names:
            rows.append({
                "target": result.target.name, "metric": metric,
                "shipped": result.kind,
                "model": result.metrics.get(metric),
                **{f"baseline {k}": v.get(metric) for k, v in result.baselines.items()},
                "oracle": result.oracle.get(metric),
            })
    return rows
