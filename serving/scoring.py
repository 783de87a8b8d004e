"""One thread per process runs everything that calls the models.

LightGBM's predict on one booster from two threads at once is not reliably safe
(LightGBM issue #5482, for ``pred_contrib`` in particular), and the three endpoints
that score (predict passes, batch, forecast) could otherwise overlap. Running them in
one dedicated thread keeps model calls in sequence and leaves the event loop free to
read requests and answer ``/health`` while a long batch is scored.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_SCORING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l2c-scoring")


async def in_scoring_thread(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)`` in the scoring thread, awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_SCORING, functools.partial(work, *args, **kwargs))
