"""API settings from the environment (prefix ``L2C_``) or a ``.env`` file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_KEYS = frozenset({"", "change-me", "changeme", "placeholder", "secret", "dev-key"})


class Settings(BaseSettings):
    """Everything an operator sets; unsafe combinations are refused at start-up."""

    model_config = SettingsConfigDict(env_prefix="L2C_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    api_key: SecretStr = SecretStr("dev-key")
    max_request_bytes: int = 50_000_000  # a 10k-case CSV upload is about 7 MB
    max_batch_cases: int = 20_000
    max_events_per_case: int = 2_000
    top_k: int = 5
    forecast_simulations: int = 2000
    forecast_months: int = 6
    load_models_on_startup: bool = True
    #: how often each worker asks the registry whether a new champion was promoted (and
    #: reloads if so); 0 turns it off
    watch_champions_seconds: float = Field(30.0, ge=0)
    #: concurrent /v1/predict requests scored in one pass (each as if alone); a pass
    #: takes at most this many (its latency grows with each case)
    coalesce_predictions: bool = True
    coalesce_max_cases: int = Field(32, ge=1, le=1000)
    #: how long a pass may wait for as many requests as were in flight before it
    coalesce_gather_ms: float = Field(15.0, ge=0, le=200)
    #: serve /docs, /redoc and /openapi.json (they need no key: the spec lists every route
    #: and field); unset: on in development, off in production
    expose_docs: bool | None = None
    #: whose models to serve when one registry holds several processes' (``l2c train
    #: --name`` or the mapping's name); unset: the default names (l2c-outcome ...)
    process: str | None = None

    @property
    def docs_open(self) -> bool:
        return self.environment == "development" if self.expose_docs is None else self.expose_docs

    @model_validator(mode="after")
    def _no_placeholder_key_outside_development(self) -> Settings:
        if self.environment != "development" and (
            self.api_key.get_secret_value().strip().lower() in PLACEHOLDER_KEYS
        ):
            raise ValueError(
                "L2C_API_KEY is unset or a placeholder; set a real secret before running "
                f"with L2C_ENVIRONMENT={self.environment}")
        return self
