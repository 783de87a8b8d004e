"""What is being served, and switching to new champions."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from serving.deps import SnapshotDep, StoreDep
from serving.schemas import ModelsResponse

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsResponse)
async def list_models(snapshot: SnapshotDep, store: StoreDep) -> dict[str, Any]:
    """Served versions, the data they were trained on, and their test metrics."""
    models = []
    for target, served in snapshot.models.items():
        info = served.bundle.info
        models.append({
            "target": target,
            "registered_name": info.get("registered_name",
                                        served.bundle.target.registered_name),
            "kind": info.get("kind", "lightgbm"), "kind_label": info.get("kind_label"),
            "is_baseline": bool(info.get("kind_is_baseline", False)),
            "kind_reason": info.get("kind_reason"), "low_data": info.get("low_data"),
            "version": served.version, "run_id": served.run_id,
            "trained_on": _without_folders(info.get("trained_on", {})),
            "split_time": info.get("split_time"),
            "test_metrics": {k: float(v) for k, v in info.get("metrics", {}).items()
                             if np.isfinite(v)},
        })
    return {"models": models, "load_errors": dict(store.last_errors)}


def _without_folders(trained_on: dict[str, Any]) -> dict[str, Any]:
    """The training file by its name only: the folder it was in on the training machine
    tells a client nothing it can use, and something about the host it should not know."""
    path = trained_on.get("path")
    if not isinstance(path, str):
        return dict(trained_on)
    return {**trained_on, "path": PureWindowsPath(PurePosixPath(path).name).name}


@router.post("/reload")
async def reload_models(store: StoreDep) -> dict[str, Any]:
    """Load the current champions; a model that fails keeps the previous one serving."""
    report = await run_in_threadpool(store.reload)
    return {"reloaded": all(r["loaded"] for r in report.values()), "targets": report}
