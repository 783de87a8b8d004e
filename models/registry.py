"""Where models live: the MLflow tracking/registry location and the champion alias.

Default is SQLite in the working folder (``sqlite:///./mlflow.db``, artifacts in
``./mlruns``), so one person needs no server; ``MLFLOW_TRACKING_URI`` points a team at
a tracking server. Nothing here runs at import time.

It also holds the two checks that training, promotion and serving must agree on:
which registered versions may become (or stand in for) a champion, and how a version
is loaded and proved usable before anything relies on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from models.bundle import TargetBundle

CHAMPION = "champion"
#: version tag set when a version becomes the champion: serving falls back to former
#: champions before versions that were never promoted
PROMOTED_TAG = "l2c.promoted_at"

#: SQLite stores this process has created or found complete (no lock needed again)
_READY_STORES: set[str] = set()


class ModelUnusableError(Exception):
    """A registered version cannot be loaded, or loads but cannot predict or explain."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


#: the registry URI this process derived from the tracking URI: MLflow writes it to
#: MLFLOW_REGISTRY_URI, where it must not pass for the user's choice when the tracking
#: URI changes later (it would keep a second store's models in the first's registry)
_DERIVED_REGISTRY: list[str | None] = [None]


def configure_mlflow() -> str:
    """Point MLflow at the configured store (creating it safely); returns the URI.

    The registry is the tracking store unless the user names another in
    MLFLOW_REGISTRY_URI.
    """
    import mlflow

    uri = tracking_uri()
    given = os.environ.get("MLFLOW_REGISTRY_URI")
    chosen = bool(given) and given != _DERIVED_REGISTRY[0]
    registry = given if chosen else uri
    _DERIVED_REGISTRY[0] = None if chosen else registry
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    for store_uri in dict.fromkeys((uri, registry)):
        ensure_sqlite_store(store_uri)
    return uri


def ensure_sqlite_store(uri: str) -> None:
    """Create a SQLite store's tables under a file lock beside the database.

    MLflow creates its tables and runs its schema migrations on the first use of a
    store, and two processes starting at once on a new file (two ``l2c train``, or the
    workers of ``l2c serve``) both run them: the second fails with ``duplicate column
    name``. Under the lock the first creates the store and the others find it complete.
    A process outside this code (``mlflow ui``) does not take the lock, hence the retry.
    """
    if not uri.startswith("sqlite:///") or uri in _READY_STORES:
        return
    import fcntl

    database = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if not database.name or database.name == ":memory:":
        return
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{database}.lock", "a")  # noqa: SIM115 - closed below
    except OSError:  # a read-only folder: nobody creates a store there; just open it
        _open_stores(uri)
    else:
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _open_stores(uri)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(uri)


def _open_stores(uri: str, attempts: int = 5) -> None:
    """Open the tracking and registry stores of ``uri`` once (which creates them)."""
    from mlflow.tracking import MlflowClient

    for attempt in range(attempts):
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
            return
        except Exception as exc:  # sqlalchemy's or MLflow's wrapper of it
            racing = any(text in str(exc) for text in ("duplicate column", "already exists",
                                                       "database is locked"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def champion_uri(registered_name: str) -> str:
    return f"models:/{registered_name}@{CHAMPION}"


def version_uri(registered_name: str, version: int | str) -> str:
    return f"models:/{registered_name}/{version}"


def current_champion(client: MlflowClient, registered_name: str) -> int | None:
    """The version the champion alias points at, or None when there is none (yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(registered_name, CHAMPION).version)
    except MlflowException:
        return None


def unpromotable_reason(client: MlflowClient, version: ModelVersion) -> str | None:
    """Why this version must not become (or stand in for) a champion; None if it may.

    A version is promotable only when its training run finished: a run interrupted
    after registering (Ctrl-C, ``kill -9``) is left RUNNING, FAILED or deleted, and
    its version may lack the rest of what the run logs (the evaluation set, tags).
    """
    from mlflow.exceptions import MlflowException

    label = f"{version.name} version {version.version}"
    if str(version.status) != "READY":
        return f"{label} is not ready in the registry (status {version.status})"
    if not version.run_id:
        return f"{label} names no training run"
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return f"{label}: its training run {version.run_id} no longer exists"
    if run.info.lifecycle_stage == "deleted":
        return (f"{label}: its training run {version.run_id} was deleted (an interrupted "
                "or failed training)")
    if run.info.status != "FINISHED":
        return (f"{label}: its training run {version.run_id} is {run.info.status}, not "
                "FINISHED (interrupted, failed or still running)")
    return None


def versions_newest_first(client: MlflowClient, registered_name: str) -> list[ModelVersion]:
    found = client.search_model_versions(f"name = '{registered_name}'")
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def load_version(registered_name: str, version: int | str) -> TargetBundle:
    """The native bundle of one version, loaded and smoke-tested; ``ModelUnusableError``
    (saying why) if either fails. Promotion and serving both use this one check."""
    from models.bundle import smoke_test
    from models.pyfunc import load_bundle

    label = f"{registered_name} version {version}"
    try:
        bundle = load_bundle(version_uri(registered_name, version))
    except Exception as exc:  # unpickling, missing files, registry errors: all say "unusable"
        raise ModelUnusableError(
            f"{label} cannot be loaded ({_describe(exc)}); its artifacts are missing or "
            "damaged: retrain it") from exc
    smoke_test(bundle, label)
    return bundle


def _describe(exc: BaseException) -> str:
    """The exception's type and the first line of its message (MLflow's run long)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def tag_promoted(client: MlflowClient, registered_name: str, version: int | str) -> None:
    """Record when a version became the champion (ISO, to the microsecond: it sorts)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    client.set_model_version_tag(registered_name, str(version), PROMOTED_TAG, stamp)
