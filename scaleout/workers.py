"""How every worker of a job allocates Arrow memory: from the C library's allocator.

Reading Parquet, Dask's p2p shuffle (which moves shards as Arrow tables) and the
partitions written to the store all allocate through pyarrow's default memory pool,
mimalloc in pyarrow's wheels. mimalloc keeps pages a task has freed for later
allocations, so they still count in the worker's resident set while the next tasks
allocate beside them, and the worker's peak is higher than what it ever used at once
(measured in docs/scale.md, "Memory"). The system allocator gives freed memory back
(Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` for that).

The pool is set by a worker plugin rather than an environment variable so that it also
reaches the workers of a cluster someone else started (``--scheduler``) and any worker
that joins later; the plugin only changes which allocator Arrow asks.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class ArrowSystemMemory(WorkerPlugin):
    """Sets pyarrow's default memory pool to the system allocator on each worker."""

    name = "l2c-arrow-system-memory"
    idempotent = True  # registered by every job on a shared cluster: once is enough

    def setup(self, worker: Any) -> None:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


def prepare_workers(client: Any) -> None:
    """Register the worker set-up every job needs (now and on workers that join later)."""
    client.register_plugin(ArrowSystemMemory())
