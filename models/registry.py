"""Where models live: the MLflow tracking/registry location and the champion alias.

Default is SQLite in the working folder (``sqlite:///./mlflow.db``, artifacts in
``./mlruns``), so one person needs no server; ``MLFLOW_TRACKING_URI`` points a team at
a tracking server. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def configure_mlflow() -> str:
    """Point MLflow at the configured store; returns the URI for messages."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    return uri


def champion_uri(registered_name: str) -> str:
    return f"models:/{registered_name}@{CHAMPION}"


def current_champion(client: MlflowClient, registered_name: str) -> int | None:
    """The version the champion alias points at, or None when there is none (yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(registered_name, CHAMPION).version)
    except MlflowException:
        return None
