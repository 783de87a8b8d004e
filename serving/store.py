"""The champions being served, swapped as one snapshot so reloads drop no request.

A request reads ``store.snapshot`` once and uses that object to the end; a reload
builds a complete new snapshot off to the side and replaces the reference in one
assignment. A target whose new champion fails to load keeps its previous model.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from typing import Any

from models.bundle import TargetBundle
from models.registry import CHAMPION, champion_uri, configure_mlflow, current_champion
from models.targets import TARGETS


class ModelsNotLoadedError(Exception):
    """No champion is available for a target the request needs."""


@dataclass(frozen=True)
class ServedModel:
    target: str
    version: int
    run_id: str
    bundle: TargetBundle


@dataclass(frozen=True)
class Snapshot:
    models: dict[str, ServedModel] = field(default_factory=dict)

    def get(self, target: str) -> ServedModel:
        if target not in self.models:
            raise ModelsNotLoadedError(
                f"no {target} model is being served: train one (`l2c train LOG`) and promote "
                "it, then POST /v1/models/reload")
        return self.models[target]


def load_champion(target: str) -> ServedModel:
    """Load one target's champion from the registry (pyfunc wrapper -> native bundle)."""
    from mlflow.tracking import MlflowClient

    from models.pyfunc import load_bundle

    name = TARGETS[target].registered_name
    version = MlflowClient().get_model_version_by_alias(name, CHAMPION)
    bundle = load_bundle(champion_uri(name))
    smoke_test(bundle, name, int(version.version))
    return ServedModel(target=target, version=int(version.version), run_id=version.run_id,
                       bundle=bundle)


def smoke_test(bundle: TargetBundle, name: str, version: int) -> None:
    """Score and explain the bundle's own example before serving it: a model pickled by
    older code can load yet fail on first use, and must then not replace a working one.
    Explaining it also makes TreeSHAP's copy of the trees now, not on a first request."""
    example = bundle.info.get("example_events")
    if example is None:
        raise RuntimeError(f"{name} version {version} carries no example to check; retrain it")
    try:
        bundle.predict_events(example, last_only=True)
        bundle.contributions(bundle.pipeline.encode(example, last_only=True).matrix())
    except Exception as exc:
        raise RuntimeError(
            f"{name} version {version} loads but cannot predict or explain ({type(exc).__name__}: "
            f"{exc}); it was probably trained by an older version: retrain it") from exc


def champion_versions() -> dict[str, int]:
    """Each target's champion version in the registry now (targets without one left out)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    versions = {target: current_champion(client, spec.registered_name)
                for target, spec in TARGETS.items()}
    return {target: v for target, v in versions.items() if v is not None}


class ModelStore:
    def __init__(self, loader: Any = load_champion,
                 versions: Any = champion_versions) -> None:
        self._loader = loader
        self._versions = versions
        self._lock = threading.Lock()
        self.snapshot = Snapshot()
        self.last_errors: dict[str, str] = {}
        self._refused: dict[str, int] = {}  # target -> champion version that failed to load

    def reload_if_promoted(self) -> dict[str, dict[str, Any]] | None:
        """Reload when the registry names a champion other than the one served (promoted
        since, or reloaded by another worker process); None when nothing changed. A
        version that failed to load is not retried until another is promoted."""
        configure_mlflow()
        current = {t: m.version for t, m in self.snapshot.models.items()}
        wanted = self._versions()
        changed = [t for t, v in wanted.items()
                   if v != current.get(t) and v != self._refused.get(t)]
        if not changed:
            return None
        report = self.reload()
        for target in changed:
            if not report[target]["loaded"]:
                self._refused[target] = wanted[target]
        return report

    def reload(self) -> dict[str, dict[str, Any]]:
        """Load every champion; report per target what happened.

        The loaded models are frozen out of the garbage collector's sight (``gc.freeze``):
        a full collection walked their ~340k objects in ~180 ms, stalling every request
        of that moment; a reload lets the collector see (and free) the old ones first.
        """
        with self._lock:
            gc.unfreeze()
            configure_mlflow()
            current = dict(self.snapshot.models)
            report: dict[str, dict[str, Any]] = {}
            for target in TARGETS:
                try:
                    served = self._loader(target)
                except Exception as exc:  # any load failure keeps the previous model
                    previous = current.get(target)
                    message = f"{type(exc).__name__}: {exc}"
                    self.last_errors[target] = message
                    report[target] = {"loaded": False, "error": message,
                                      "serving_version": previous.version if previous else None}
                    continue
                current[target] = served
                self.last_errors.pop(target, None)
                report[target] = {"loaded": True, "serving_version": served.version}
            self.snapshot = Snapshot(models=current)
            gc.collect()
            gc.freeze()
            return report
