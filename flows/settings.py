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
| step_cache         | FORGEFLOW_STEP_CACHE         | true (reuse finished steps of earlier runs) |
| query_timeout_s    | FORGEFLOW_QUERY_TIMEOUT_S    | 300 (catalog SQL)       |
| query_memory       | FORGEFLOW_QUERY_MEMORY       | a quarter of RAM, at most 4 GiB (catalog SQL) |
| compaction_grace_s | FORGEFLOW_COMPACTION_GRACE_S | 3600 (a compaction pending longer is settled by the next one) |
| state_dir          | FORGEFLOW_STATE_DIR          | ~/.forgeflow (where `forgeflow up` keeps its state) |
| model_allow        | FORGEFLOW_MODEL_ALLOW        | (none: served runs build torchvision:, forgeflow: only) |
| deployments        | FORGEFLOW_DEPLOYMENTS        | deploy/prefect.yaml     |
| latency_table      | FORGEFLOW_LATENCY_TABLE      | ../shared/data/nb201_hw.parquet (`forgeflow latency`) |
| progress           | FORGEFLOW_PROGRESS           | false (true: a progress bar even when stderr is no terminal) |
| shutdown_grace_s   | FORGEFLOW_SHUTDOWN_GRACE_S   | 8 (seconds from Ctrl-C / SIGTERM to killing what is left) |
| (warm path)        | FORGEFLOW_WARM               | 1 (0: never hand a command to `forgeflow up`'s warm command server) |
| (warm path)        | FORGEFLOW_WARM_DEBUG, FORGEFLOW_WARM_PROFILE | (diagnostics: why a command was not served; a cProfile path) |
The warm-path switches (and FORGEFLOW_STATE_DIR, to find the server) are read by flows/warm_client.py, the console
command's first step, before anything but the standard library is imported.
The layers below take these as parameters (``open_settings_catalog`` passes the query limits to the catalog); none
of them reads a FORGEFLOW_* variable except tasks/step_cache.py's two step defaults: FORGEFLOW_STEP_RETRIES becomes
the steps' Prefect ``retries`` when their modules are imported in the flow's process (the task objects, with that
value, travel to the Dask workers), and FORGEFLOW_STEP_CACHE is the fallback only for a step called outside a flow
(every flow passes its command's ``step_cache`` with the step).
AWS credentials are never settings: they come from the standard AWS environment/config and are never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forgeflow.catalog import DEFAULT_URL
from forgeflow.tasks.errors import ForgeflowError


def _catalog_check(name: str):
    """The catalog's own check for the setting ``name`` (imported late: settings load before the catalog)."""
    if name == "compaction_grace_s":
        from forgeflow.catalog.compaction import check_grace_s

        return check_grace_s
    from forgeflow.catalog.sql import check_memory_limit, check_timeout_s

    return check_timeout_s if name == "query_timeout_s" else check_memory_limit


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGEFLOW_", extra="ignore")

    catalog: str = DEFAULT_URL
    s3_endpoint: str | None = None
    dask_address: str | None = None
    dask_workers: int = 2
    dask_threads: int = 1
    dask_memory_limit: str = "4GiB"
    step_retries: int = 1
    step_cache: bool = True
    query_timeout_s: float = 300.0
    query_memory: str | None = None
    compaction_grace_s: float = 3600.0
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".forgeflow")
    model_allow: str = ""
    deployments: str | None = None
    latency_table: str | None = None
    progress: bool = False
    shutdown_grace_s: float = 8.0

    @field_validator("dask_workers", "dask_threads")
    @classmethod
    def _positive(cls, v: int, info) -> int:
        if v < 1:
            raise ValueError(f"FORGEFLOW_{info.field_name.upper()} must be >= 1, got {v}")
        return v

    @field_validator("step_retries")
    @classmethod
    def _retries(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"FORGEFLOW_STEP_RETRIES must be >= 0, got {v}")
        return v

    @field_validator("query_timeout_s", "compaction_grace_s", "query_memory")
    @classmethod
    def _catalog_limit(cls, v, info):
        """The catalog owns these limits and their checks; a bad value names its environment variable."""
        if info.field_name == "query_memory" and (v is None or not str(v).strip()):
            return None
        check = _catalog_check(info.field_name)
        try:
            return check(v)
        except ForgeflowError as exc:
            raise ValueError(f"FORGEFLOW_{info.field_name.upper()}: {exc}") from None

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir(cls, v):
        return v if v not in (None, "") else Path.home() / ".forgeflow"

    @field_validator("shutdown_grace_s")
    @classmethod
    def _grace(cls, v: float) -> float:
        if not v >= 0:
            raise ValueError(f"FORGEFLOW_SHUTDOWN_GRACE_S must be >= 0 seconds, got {v}")
        return v

    @field_validator("dask_memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str:
        from dask.utils import parse_bytes

        text = str(v).strip()
        if text.lower() == "auto":
            return "auto"
        try:
            n = parse_bytes(text)
        except (ValueError, TypeError):
            raise ValueError(f"FORGEFLOW_DASK_MEMORY_LIMIT {v!r} is not a size such as 4GiB, 512MB or auto") from None
        if n <= 0:
            raise ValueError(f"FORGEFLOW_DASK_MEMORY_LIMIT must be > 0 (or auto), got {v!r}")
        return text

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
            raise ForgeflowError(f"invalid setting: {_first_error(exc)}") from None


def load_settings(**overrides) -> Settings:
    try:
        base = Settings()
    except ValueError as exc:
        raise ForgeflowError(f"invalid FORGEFLOW_* environment setting: {_first_error(exc)}") from None
    return base.with_overrides(**overrides)


def _first_error(exc: ValueError) -> str:
    """pydantic's first error as one line, naming the environment variable."""
    if not hasattr(exc, "errors"):
        return str(exc)
    first = exc.errors()[0]
    msg = str(first.get("msg", exc)).removeprefix("Value error, ")
    name = f"FORGEFLOW_{first['loc'][0]}".upper() if first.get("loc") else ""
    return msg if not name or name in msg else f"{name}: {msg} (got {first.get('input')!r})"
