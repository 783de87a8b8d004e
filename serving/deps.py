"""Dependencies injected into endpoints (tests swap them with dependency_overrides).

They are ``async`` though they never wait: FastAPI runs a plain ``def`` dependency in
its thread pool, and five such hand-offs per request cost the event loop more than the
work they wrap."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from serving.coalesce import PredictionCoalescer
from serving.settings import Settings
from serving.store import ModelStore, Snapshot

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="the key set in L2C_API_KEY")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def key_is_valid(settings: Settings, key: str | None) -> bool:
    """The key sent is the configured one (compared in constant time)."""
    expected = settings.api_key.get_secret_value()
    return key is not None and secrets.compare_digest(key.encode(), expected.encode())


async def require_api_key(settings: Annotated[Settings, Depends(get_settings)],
                          key: Annotated[str | None, Security(api_key_header)] = None) -> None:
    if not key_is_valid(settings, key):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail="missing or wrong API key: send it in the X-API-Key header")


async def get_coalescer(request: Request) -> PredictionCoalescer:
    return request.app.state.coalescer


async def get_snapshot(store: Annotated[ModelStore, Depends(get_store)]) -> Snapshot:
    """The models of this request, fixed for its whole duration."""
    return store.snapshot


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
CoalescerDep = Annotated[PredictionCoalescer, Depends(get_coalescer)]
