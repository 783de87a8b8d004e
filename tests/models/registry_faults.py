"""Registry faults made on purpose: damaged copies of a version, versions of unfinished runs.

Each helper adds a version to the session's registry and the caller deletes it
(``forget``) when done, so other tests see the registry as the session left it.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from models.registry import CHAMPION, version_uri


def copy_of_version(name: str, version: int | str, folder: Path, run_id: str | None = None,
                    damage: bool = False) -> int:
    """Register a copy of ``version``'s files (from ``folder``) as a new version of the
    same run (or of ``run_id``); ``damage`` overwrites the pickled bundle with garbage,
    as a disk fault or a half-written upload would."""
    client = MlflowClient()
    local = Path(mlflow.artifacts.download_artifacts(version_uri(name, version),
                                                     dst_path=str(folder)))
    if damage:
        bundles = list(local.rglob("bundle.joblib"))
        assert bundles, f"no bundle.joblib under {local}"
        for path in bundles:
            path.write_bytes(b"\x80\x04not a pickle at all" * 10)
    source = client.get_model_version(name, str(version))
    created = client.create_model_version(name, source=str(local),
                                          run_id=run_id or source.run_id)
    return int(created.version)


def champion_of(name: str) -> int:
    return int(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)


def forget(name: str, *versions: int) -> None:
    client = MlflowClient()
    for version in versions:
        client.delete_model_version(name, str(version))
