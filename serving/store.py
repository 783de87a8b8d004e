"""The champions being served, swapped as one snapshot so reloads drop no request.

A request reads ``store.snapshot`` once and uses that object to the end; a reload
builds a complete new snapshot off to the side and replaces the reference in one
assignment. A target whose new champion fails to load keeps its previous model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from models.bundle import TargetBundle
from models.registry import CHAMPION, champion_uri, configure_mlflow
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
    """Score the bundle's own example before serving it: a model pickled by older code
    can load yet fail on first use, and must then not replace a working one."""
    example = bundle.info.get("example_events")
    if example is None:
        raise RuntimeError(f"{name} version {version} carries no example to check; retrain it")
    try:
        bundle.predict_events(example, last_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"{name} version {version} loads but cannot predict ({type(exc).__name__}: "
            f"{exc}); it was probably trained by an older version: retrain it") from exc


class ModelStore:
    def __init__(self, loader: Any = load_champion) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self.snapshot = Snapshot()
        self.last_errors: dict[str, str] = {}

    def reload(self) -> dict[str, dict[str, Any]]:
        """Load every champion; report per target what happened."""
        with self._lock:
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
            return report
