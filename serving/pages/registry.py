"""The models page's data: champions and recent versions from the registry, their runs'
logged figures and plots, and promotion by the gate of ``l2c promote``
(``models.promotion``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.promotion import PromotionError, promote
from models.registry import configure_mlflow, current_champion, versions_newest_first
from models.selection import BASELINE_KINDS, kind_label
from models.targets import TARGETS

RECENT = 4
#: figures shown side by side, per kind of target
_METRICS = {"classification": ("auc", "pr_auc", "brier", "ece", "log_loss",
                               "stability.median_jump", "stability.p90_jump"),
            "regression": ("mae_days", "rmse_days", "coverage_80", "interval_width_days")}


#: column heads other than the metric's logged name (the win probability's median and
#: P90 jump between a test deal's consecutive events)
HEADS = {"stability.median_jump": "jump p50", "stability.p90_jump": "jump p90"}


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    configure_mlflow()
    return MlflowClient()


def overview(process: str | None = None) -> dict[str, Any]:
    """Per target: its champion, its recent versions with their runs' test figures (by
    prefix length too) and logged plots; or, when the registry cannot be read or holds
    nothing, what to do. ``process``: whose models (``L2C_PROCESS``; None: the default
    names), the same ones the API serves."""
    try:
        client = _client()
        targets = [_target(client, target, process) for target in TARGETS.values()]
    except Exception as exc:  # an unreachable or broken tracking store
        return {"error": f"the model registry cannot be read ({type(exc).__name__}: {exc})",
                "targets": []}
    return {"error": None, "targets": targets, "heads": HEADS,
            "empty": all(not t["versions"] for t in targets)}


def _target(client: Any, target: Any, process: str | None = None) -> dict[str, Any]:
    name = target.model_name(process)
    try:
        versions = versions_newest_first(client, name)
    except Exception:  # the registered model does not exist yet
        versions = []
    champion = current_champion(client, name) if versions else None
    shown = versions[:RECENT]
    if champion is not None and all(int(v.version) != champion for v in shown):
        shown += [v for v in versions if int(v.version) == champion]
    listed = []
    for version in shown:
        run = _run_facts(client, version.run_id)
        metrics = run["metrics"]
        prefix = f"{target.name}."
        main = {k: metrics.get(prefix + k) for k in _METRICS[target.kind]
                if prefix + k in metrics}
        by_prefix: dict[str, dict[str, float]] = {}
        for key, value in metrics.items():
            if key.startswith(prefix + "prefix_"):
                bucket, _, metric = key[len(prefix + "prefix_"):].partition(".")
                by_prefix.setdefault(bucket, {})[metric] = value
        listed.append({
            "version": int(version.version), "run_id": version.run_id,
            "champion": int(version.version) == champion,
            "created": _registered_at(version.creation_timestamp), "metrics": main,
            **_shipped(dict(version.tags or {})),
            "by_prefix": dict(sorted(by_prefix.items(),
                                     key=lambda kv: int(kv[0].split("-")[0].split("_")[0]))),
            "trained_on": run["trained_on"],
            "plots": [n for n in run["plots"] if n.startswith(f"{target.name}_")]})
    return {"name": target.name, "registered_name": name, "main_metric": target.main_metric,
            "higher_is_better": target.higher_is_better, "champion": champion,
            "versions": listed, "description": target.description}


def _registered_at(millis: int | None) -> datetime | None:
    """When the version was registered (MLflow keeps milliseconds since the epoch)."""
    return None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC)


def _shipped(tags: dict[str, str]) -> dict[str, Any]:
    """What the version is (LightGBM, the logistic base, or a baseline), why it was
    shipped, and its "low data" message, from the tags training put on the version;
    a version trained before those tags existed has none of them."""
    kind = tags.get("kind")
    low = tags.get("low_data")
    return {"kind": kind, "kind_label": kind_label(kind) if kind else None,
            "is_baseline": kind in BASELINE_KINDS, "kind_reason": tags.get("kind_reason"),
            "low_data": low if low and low != "no" else None}


_RUNS: dict[str, dict[str, Any]] = {}


def _run_facts(client: Any, run_id: str) -> dict[str, Any]:
    """A run's metrics, training data and plot names, read once: a finished run's
    records never change (a run still going is read again next time)."""
    if run_id in _RUNS:
        return _RUNS[run_id]
    try:
        run = client.get_run(run_id)
        found = client.list_artifacts(run_id, "plots")
    except Exception:  # deleted run, unreachable store: shown without its figures
        return {"metrics": {}, "trained_on": {}, "plots": []}
    data = run.data
    wanted = {k: v[:12] if k == "data.sha256" else v
              for k, v in {**data.params, **data.tags}.items()
              if k.startswith("data.") and not k.startswith("data.path")}
    facts = {"metrics": dict(data.metrics), "trained_on": dict(sorted(wanted.items())[:8]),
             "plots": sorted(Path(f.path).name for f in found if f.path.endswith(".png"))}
    if run.info.status == "FINISHED":
        if len(_RUNS) > 256:
            _RUNS.clear()
        _RUNS[run_id] = facts
    return facts


def plot_bytes(run_id: str, name: str) -> bytes | None:
    """One logged plot of a run (``plots/<name>``), or None if it has none by that name."""
    import mlflow

    try:
        _client()
        local = mlflow.artifacts.download_artifacts(run_id=run_id,
                                                    artifact_path=f"plots/{name}")
        return Path(local).read_bytes()
    except Exception:
        return None


def promote_version(target: str, version: int, process: str | None = None
                    ) -> dict[str, Any]:
    """Promote by the gate of ``l2c promote`` (never forced from a page): what happened,
    or why it was refused, in its own words."""
    try:
        result = promote(target, version, process=process)
    except PromotionError as exc:  # a page has no --force: say where it is
        return {"promoted": False,
                "message": str(exc).replace("; use --force to", "; `l2c promote --force` can")}
    if result.previous is None or result.candidate_score is None:
        text = f"{target}: version {result.version} is now the champion"
    else:
        text = (f"{target}: version {result.version} is now the champion (was "
                f"{result.previous}; {result.metric} {result.candidate_score:.3f} vs "
                f"{result.champion_score:.3f} on its test data)")
    if result.warnings:  # a low-data model is said to be one here too, as by l2c promote
        text += ". " + "; ".join(result.warnings)
    return {"promoted": True, "message": text}
