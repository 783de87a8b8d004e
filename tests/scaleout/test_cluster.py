"""The workers ``--cluster local:N`` starts keep no profile history.

A worker's statistical profiler keeps a call tree per second of work, so without this
setting a worker's memory grows with how long the job runs (docs/scale.md, "Memory").
One worker process, as the CLI starts it (the setting has to reach a process the nanny
spawns, not only this one).
"""

from __future__ import annotations

import time

import dask
import distributed  # noqa: F401  (loads Dask's distributed settings)

from scaleout.cluster import LOCAL_CLUSTER_CONFIG, ClusterSpec, dask_client


def _busy(seconds: float) -> int:
    """Keep the worker's thread busy long enough for a profiler cycle (one second)."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def _profile_state(dask_worker) -> dict:
    return {"enabled": dask.config.get("distributed.worker.profile.enabled"),
            "callbacks": sorted(k for k in dask_worker.periodic_callbacks if "profile" in k),
            "history": len(dask_worker.profile_history),
            "keys_history": len(dask_worker.profile_keys_history)}


def test_local_workers_run_without_the_profiler() -> None:
    before = dask.config.get("distributed.worker.profile.enabled")
    with dask_client(ClusterSpec(workers=1, memory_limit="1GB")) as client:
        assert client.submit(_busy, 2.5).result() > 0
        states = list(client.run(_profile_state).values())
    assert states == [{"enabled": False, "callbacks": [], "history": 0, "keys_history": 0}]
    # set for the workers' start only: this process's settings are as they were
    assert dask.config.get("distributed.worker.profile.enabled") == before
    assert set(LOCAL_CLUSTER_CONFIG) == {"distributed.worker.profile.enabled"}


def test_threaded_workers_too() -> None:
    with dask_client(ClusterSpec(workers=1, processes=False)) as client:
        assert client.submit(_busy, 1.5).result() > 0
        states = list(client.run(_profile_state).values())
    assert states[0]["callbacks"] == [] and states[0]["history"] == 0
