"""One thread per process runs everything that calls the models.

LightGBM's predict on one booster from two threads at once is not reliably safe
(LightGBM issue #5482, for ``pred_contrib`` in particular), and the three endpoints
that score (predict passes, batch, forecast) could otherwise overlap. Running them in
one dedicated thread keeps model calls in sequence and leaves the event loop free to
read requests and answer ``/health`` while a long batch is scored.

TreeSHAP is the exception: it reads copies of the trees of its own
(``models.estimators.treeshap_booster``) in a second thread, ``beside_scoring``.
It is most of the models' time, runs in C without the GIL, and so overlaps the
scoring thread's Python work on the machine's other core.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_SCORING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l2c-scoring")
_EXPLAINING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l2c-explain")


async def in_scoring_thread(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)`` in the scoring thread, awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_SCORING, functools.partial(work, *args, **kwargs))


def beside_scoring(work: Callable[..., T], *args: Any) -> Future[T]:
    """``work(*args)`` started in the explanation thread; the scoring thread goes on and
    takes the result when it needs it."""
    return _EXPLAINING.submit(work, *args)
