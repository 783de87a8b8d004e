"""Results kept per served models: a page or an insight is asked for far more often than
a model is promoted, and its key names the models it depends on, so a promotion is
seen at once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_KEPT: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_LOCK = threading.Lock()
_KEEP = 32


def kept(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """``compute()``, once per key among the last few asked for (a key names the served
    models it depends on, so a promotion is seen at once)."""
    with _LOCK:  # requests run in the thread pool
        if key in _KEPT:
            _KEPT.move_to_end(key)
            return _KEPT[key]
    value = compute()
    with _LOCK:
        _KEPT[key] = value
        while len(_KEPT) > _KEEP:
            _KEPT.popitem(last=False)
    return value
