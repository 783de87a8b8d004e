"""Where the work runs: a LocalCluster started here, or a scheduler that already runs.

``--cluster local:N`` starts N single-threaded worker processes on this machine (a
worker per core: pandas and LightGBM hold the GIL for much of their work, so threads
would wait on each other); ``--scheduler tcp://HOST:8786`` (or the environment
variable ``DASK_SCHEDULER_ADDRESS``) joins a cluster someone else started. Without
either the single-process path runs, and none of this is imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from features.errors import EventLogError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

#: Dask settings for the workers this project starts itself (``--cluster local:N``).
#: Each worker's statistical profiler keeps one call tree per second of the job
#: (``Worker.profile_history`` and ``profile_keys_history``, up to
#: ``distributed.admin.low-level-log-length`` trees each), so what a worker holds grows
#: with how long the job has run, that is with the log, not with the partition it
#: works on. The dashboard's task stream, progress and memory still show; its profile
#: page stays empty. A cluster someone else started keeps its own settings
#: (docs/scale.md, "Memory").
LOCAL_CLUSTER_CONFIG: dict[str, object] = {"distributed.worker.profile.enabled": False}


class ClusterError(EventLogError):
    """The cluster cannot be started or reached (a user's setting, not a bug)."""


@dataclass(frozen=True)
class ClusterSpec:
    """Either ``workers`` local workers or a scheduler ``address``."""

    workers: int | None = None
    address: str | None = None
    memory_limit: str | None = None  # per local worker, e.g. "8GB"; None: Dask's share
    processes: bool = True  # tests run workers as threads of this process (faster start)

    @classmethod
    def from_options(cls, cluster: str | None, scheduler: str | None,
                     memory_limit: str | None = None) -> ClusterSpec | None:
        """The spec the CLI's options ask for; None means the single-process path."""
        scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        if cluster and scheduler:
            raise ClusterError("give either --cluster local:N or --scheduler ADDRESS "
                               f"(or {SCHEDULER_ENV}), not both")
        if scheduler:
            if not re.match(r"^(tcp|tls|inproc|ucx)://[^\s]+$", scheduler):
                raise ClusterError(f"scheduler address {scheduler!r}: expected e.g. "
                                   "tcp://HOST:8786")
            return cls(address=scheduler)
        if cluster:
            found = re.fullmatch(r"local:(\d+)", cluster.strip())
            if not found or int(found.group(1)) < 1:
                raise ClusterError(f"--cluster {cluster!r}: expected local:N with N >= 1 "
                                   "workers, e.g. local:2")
            return cls(workers=int(found.group(1)), memory_limit=memory_limit)
        return None


@contextmanager
def dask_client(spec: ClusterSpec) -> Iterator[object]:
    """A ``distributed.Client`` on the spec's cluster, closed (and a local cluster
    stopped) on the way out, also after an error."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    # each shuffle logs two WARNING lines that it started and ended: not for users
    logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)

    if spec.address is not None:
        try:
            client = Client(spec.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {spec.address} "
                               f"({type(exc).__name__}: {exc})") from exc
        try:
            yield client
        finally:
            client.close()
        return
    # the workers read the settings when they start (a worker process gets them from its
    # nanny), so they need not stay set afterwards
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1,
                               processes=spec.processes,
                               memory_limit=spec.memory_limit or "auto",
                               dashboard_address=":0" if spec.processes else None)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def dashboard_link(client: object) -> str | None:
    """The Dask dashboard's address, if the scheduler serves one."""
    try:
        return client.dashboard_link  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        return None


def announce_cluster(client: object, announce: Callable[[str], None] | None) -> None:
    """Tell the user how many workers the job got and where its dashboard is."""
    if announce is None:
        return
    link = dashboard_link(client)
    workers = len(client.scheduler_info().get("workers", {}))  # type: ignore[attr-defined]
    announce(f"Dask cluster with {workers} worker(s)" + (f"; dashboard: {link}" if link else ""))
