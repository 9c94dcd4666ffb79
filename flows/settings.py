"""All of forgeflow's settings in one place (pydantic-settings: environment variables FORGEFLOW_*, then CLI flags).

| setting            | environment                  | default                 |
|--------------------|------------------------------|-------------------------|
| catalog            | FORGEFLOW_CATALOG            | ./.forgeflow/catalog    |
| s3_endpoint        | FORGEFLOW_S3_ENDPOINT        | (AWS)                   |
| dask_address       | FORGEFLOW_DASK_ADDRESS       | (a new LocalCluster)    |
| dask_workers       | FORGEFLOW_DASK_WORKERS       | 2                       |
| dask_threads       | FORGEFLOW_DASK_THREADS       | 1 (per worker)          |
| dask_memory_limit  | FORGEFLOW_DASK_MEMORY_LIMIT  | 4GiB (per worker)       |
| step_retries       | FORGEFLOW_STEP_RETRIES       | 1                       |
AWS credentials are never settings: they come from the standard AWS environment/config and are never logged.
"""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog import DEFAULT_URL
from tasks.errors import ForgeflowError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGEFLOW_", extra="ignore")

    catalog: str = DEFAULT_URL
    s3_endpoint: str | None = None
    dask_address: str | None = None
    dask_workers: int = 2
    dask_threads: int = 1
    dask_memory_limit: str = "4GiB"
    step_retries: int = 1

    @field_validator("dask_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ValueError(f"Dask scheduler address {v!r} must look like tcp://HOST:PORT")
        return v

    def with_overrides(self, **overrides) -> "Settings":
        """Settings with the CLI flags that were given (None means 'not given')."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return Settings(**{**self.model_dump(), **given})
        except ValueError as exc:  # pydantic's ValidationError
            first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
            raise ForgeflowError(f"invalid setting: {first.get('msg', exc)}") from None


def load_settings(**overrides) -> Settings:
    try:
        base = Settings()
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
        raise ForgeflowError(f"invalid FORGEFLOW_* environment setting: {first.get('msg', exc)}") from None
    return base.with_overrides(**overrides)
