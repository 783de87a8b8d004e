"""The Dask tests train and promote into an MLflow store of their own.

The session's store (``tests/conftest.py``) holds the champions the serving and
training tests check; a Dask run registered there, or a model promoted there, would
change what those tests load. Each module here gets its own store, and MLflow's
process-wide URIs are put back afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="module")
def mlflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import mlflow

    home = tmp_path_factory.mktemp("mlflow-scaleout")
    saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    previous_cwd = Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.chdir(home)
    try:
        yield home
    finally:
        os.chdir(previous_cwd)
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
        for name, value in saved.items():  # after MLflow's setters, which write them too
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
