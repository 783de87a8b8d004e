"""The champions being served, swapped as one snapshot so reloads drop no request.

A request reads ``store.snapshot`` once and uses that object to the end; a reload
builds a complete new snapshot off to the side and replaces the reference in one
assignment. A target whose new champion fails to load keeps its previous model; on a
cold start (nothing served yet for it) the newest earlier version that loads and passes
the smoke test stands in, and the store says so. A target with neither is *missing*:
the snapshot names it with the reason, so the API can answer 503 instead of a null.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.bundle import TargetBundle, smoke_test
from models.registry import (
    CHAMPION,
    PROMOTED_TAG,
    ModelUnusableError,
    configure_mlflow,
    current_champion,
    load_version,
    unpromotable_reason,
    versions_newest_first,
)
from models.targets import TARGETS

__all__ = ["ChampionLoadError", "ModelStore", "ModelsNotLoadedError", "ServedModel",
           "Snapshot", "load_champion", "load_fallback", "smoke_test"]

#: earlier versions loaded at most, when a champion fails on a cold start
MAX_FALLBACK_LOADS = 5


class ModelsNotLoadedError(Exception):
    """No champion is available for a target the request needs."""


class ChampionLoadError(ModelUnusableError):
    """The champion of a target failed to load or to pass the smoke test."""

    def __init__(self, message: str, version: int | None) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class ServedModel:
    target: str
    version: int
    run_id: str
    bundle: TargetBundle
    #: why this is not the champion the registry names (a stand-in), else None
    stand_in_for: int | None = None


@dataclass(frozen=True)
class Snapshot:
    models: dict[str, ServedModel] = field(default_factory=dict)
    #: per target, the last load error (also for targets still served by a stand-in)
    errors: dict[str, str] = field(default_factory=dict)
    #: targets whose champion exists but cannot be served, with no earlier version
    #: standing in: answering without them would drop a value the champion promises
    broken: frozenset[str] = frozenset()

    @property
    def missing(self) -> dict[str, str]:
        """Targets this snapshot cannot score, each with the reason."""
        return {target: self.errors.get(target, "not loaded yet: no champion in the "
                                        "registry or no reload since start-up")
                for target in TARGETS if target not in self.models}

    @property
    def ready(self) -> bool:
        """Every target can be scored: an answer never lacks a value it should carry."""
        return not self.missing

    def require_working(self) -> None:
        """Raise ``ModelsNotLoadedError`` (503) naming each broken target: a champion
        that cannot be served, with nothing standing in. A target never promoted is not
        broken: its answers are null, with a note that says so."""
        if self.broken:
            listed = "; ".join(f"{target}: {self.errors.get(target, 'cannot be loaded')}"
                               for target in sorted(self.broken))
            raise ModelsNotLoadedError(
                f"a champion cannot be served ({listed}); promote a working version "
                "(`l2c promote`), then POST /v1/models/reload")

    def get(self, target: str) -> ServedModel:
        if target not in self.models:
            why = self.errors.get(target)
            raise ModelsNotLoadedError(
                f"no {target} model is being served"
                + (f" ({why})" if why else "")
                + ": train one (`l2c train LOG`) and promote it, then POST /v1/models/reload")
        return self.models[target]


def load_champion(target: str, process: str | None = None) -> ServedModel:
    """Load one target's champion from the registry and smoke-test it (``process``: whose
    models, as ``l2c train --name`` named them; None: the default names).

    The version is read once and loaded by number, not through the alias, so a
    promotion in between cannot serve one version under another's number."""
    from mlflow.tracking import MlflowClient

    name = TARGETS[target].model_name(process)
    version = MlflowClient().get_model_version_by_alias(name, CHAMPION)
    try:
        bundle = load_version(name, version.version)
    except ModelUnusableError as exc:
        raise ChampionLoadError(f"champion {exc}", int(version.version)) from exc
    return ServedModel(target=target, version=int(version.version), run_id=version.run_id,
                       bundle=bundle)


def load_fallback(target: str, failed: int, process: str | None = None) -> ServedModel:
    """A version before ``failed`` that may stand in for it: its run finished, and it
    loads and passes the smoke test. Former champions come first, the most recently
    promoted first, then versions never promoted, newest first. ``ModelUnusableError``
    with every reason if none does.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = TARGETS[target].model_name(process)
    earlier = [v for v in versions_newest_first(client, name) if int(v.version) < failed]
    # the most recently promoted first (a champion that was rolled back to counts as
    # recent), then versions never promoted, newest first (the sort is stable)
    earlier.sort(key=lambda v: (v.tags or {}).get(PROMOTED_TAG, ""), reverse=True)
    reasons = []
    loads = 0
    for position, candidate in enumerate(earlier):
        if loads == MAX_FALLBACK_LOADS:  # each load costs seconds of a worker's start
            reasons.append(f"{len(earlier) - position} more version(s) not tried")
            break
        why = unpromotable_reason(client, candidate)
        if why is None:
            loads += 1
            try:
                bundle = load_version(name, candidate.version)
            except ModelUnusableError as exc:
                why = str(exc)
            else:
                return ServedModel(target=target, version=int(candidate.version),
                                   run_id=candidate.run_id, bundle=bundle, stand_in_for=failed)
        reasons.append(why)
    raise ModelUnusableError(
        f"no earlier version of {name} can stand in: "
        + ("; ".join(reasons) if reasons else "there is none"))


def champion_versions(process: str | None = None) -> dict[str, int]:
    """Each target's champion version in the registry now (targets without one left out)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    versions = {target: current_champion(client, spec.model_name(process))
                for target, spec in TARGETS.items()}
    return {target: v for target, v in versions.items() if v is not None}


class ModelStore:
    @classmethod
    def for_process(cls, process: str | None) -> ModelStore:
        """A store of the champions of one process (``L2C_PROCESS``; None: the default
        names), so one registry can hold several processes' models."""
        return cls(loader=functools.partial(load_champion, process=process),
                   versions=functools.partial(champion_versions, process=process),
                   fallback=functools.partial(load_fallback, process=process))

    def __init__(self, loader: Callable[[str], ServedModel] = load_champion,
                 versions: Callable[[], dict[str, int]] = champion_versions,
                 fallback: Callable[[str, int], ServedModel] | None = load_fallback) -> None:
        self._loader = loader
        self._versions = versions
        self._fallback = fallback
        self._lock = threading.Lock()
        self.snapshot = Snapshot()
        self._refused: dict[str, int] = {}  # target -> champion version that failed to load

    @property
    def last_errors(self) -> dict[str, str]:
        """Per target, why its champion is not the model served (empty when all are)."""
        return self.snapshot.errors

    @property
    def missing(self) -> dict[str, str]:
        """Targets that cannot be scored now, with the reason (see ``Snapshot.missing``)."""
        return self.snapshot.missing

    @property
    def ready(self) -> bool:
        return self.snapshot.ready

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

        A champion that fails keeps the model served before it; with none (a cold
        start), an earlier version stands in (``fallback``). The loaded models are
        frozen out of the garbage collector's sight (``gc.freeze``): a full collection
        walked their hundreds of thousands of objects, stalling every request of that
        moment (docs/performance.md); a
        reload lets the collector see (and free) the old ones first.
        """
        with self._lock:
            gc.unfreeze()
            loader = self._loader
            try:
                configure_mlflow()
            except Exception as exc:  # a damaged or unreadable store: every load fails alike
                loader = _failing_loader(exc)
            current = dict(self.snapshot.models)
            errors = dict(self.snapshot.errors)
            report: dict[str, dict[str, Any]] = {}
            for target in TARGETS:
                try:
                    served = loader(target)
                except Exception as exc:  # any load failure keeps the previous model
                    report[target] = self._after_failure(target, exc, current, errors)
                    continue
                current[target] = served
                errors.pop(target, None)
                report[target] = {"loaded": True, "serving_version": served.version}
            broken = frozenset(t for t, r in report.items()
                               if r.get("champion_version") is not None
                               and r["serving_version"] is None)
            self.snapshot = Snapshot(models=current, errors=errors, broken=broken)
            gc.collect()
            gc.freeze()
            return report

    def _after_failure(self, target: str, exc: Exception, current: dict[str, ServedModel],
                       errors: dict[str, str]) -> dict[str, Any]:
        message = f"{type(exc).__name__}: {exc}"
        failed = getattr(exc, "version", None)
        if failed is not None:
            self._refused[target] = failed  # not retried until another is promoted
        previous = current.get(target)
        if previous is not None:
            errors[target] = (f"{message}; still serving version {previous.version}")
            return {"loaded": False, "error": message, "serving_version": previous.version}
        if failed is not None and self._fallback is not None:
            try:
                stand_in = self._fallback(target, failed)
            except Exception as fallback_exc:
                message += f"; {type(fallback_exc).__name__}: {fallback_exc}"
            else:
                current[target] = stand_in
                errors[target] = (f"{message}; serving version {stand_in.version} instead, "
                                  "the last earlier version that loads")
                return {"loaded": False, "error": message,
                        "serving_version": stand_in.version, "stand_in": True}
        errors[target] = message
        return {"loaded": False, "error": message, "serving_version": None,
                "champion_version": failed}


def _failing_loader(exc: Exception) -> Callable[[str], ServedModel]:
    def load(target: str) -> ServedModel:
        raise ModelUnusableError(
            f"the model registry cannot be opened ({type(exc).__name__}: {exc})") from exc
    return load
