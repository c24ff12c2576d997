"""tether's settings: one typed object, read once, passed down.

Precedence, highest first: arguments given to ``Settings(...)``, environment variables (``TETHER_*``),
a ``tether.toml`` file in the working directory, then the defaults below. Every setting is documented in
``docs/settings.md``; a test keeps that page complete.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


class Settings(BaseSettings):
    """Where tether keeps things and who is acting."""

    model_config = SettingsConfigDict(env_prefix="TETHER_", toml_file="tether.toml", extra="forbid")

    home: Path = Field(
        default=Path(".tether"),
        description="Store root: SQLite database, local blobs, keys and temporary files.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default a SQLite file under home. "
        "postgresql://... uses psycopg 3 (extra 'postgres').",
    )
    blob_url: str | None = Field(
        default=None,
        description="fsspec URL of the content-addressed blob store; default the folder home/blobs. "
        "s3://bucket/prefix works with any S3-compatible endpoint (extra 's3').",
    )
    blob_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for blob_url, as JSON (e.g. "
        '{"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}).',
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 signing key file; default home/keys/signing.ed25519 (created by 'tether init').",
    )
    actor: str = Field(
        default_factory=_default_actor,
        description="Who is acting, recorded with every alias move and registration.",
    )
    hash_workers: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        description="Threads that hash files in parallel.",
        ge=1,
        le=64,
    )
    audit: bool = Field(
        default=True,
        description="Write every prediction to the audit log (answered only once its record is on disk).",
    )
    audit_payload: str = Field(
        default="full",
        pattern="^(full|hashed|redact)$",
        description="What the audit log keeps of inputs and outputs: full, hashed (digests only) or redact.",
    )
    audit_redact: list[str] = Field(
        default_factory=list, description="With audit_payload=redact: the field names replaced by their digest."
    )
    audit_witness: str = Field(
        default="",
        description="Where every signed audit checkpoint is also published as it is made, outside the store: a "
        "folder (another volume, an object-lock mount) or an http(s) URL that receives the C2SP checkpoint note "
        "by POST. Empty: none.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every gateway replica for LLM budgets and rate limits, the "
        "exact LLM cache, the semantic cache's entries and calibration (a stream every replica's index follows) "
        "and the trace memory that joins delayed labels to predictions (extra 'redis'). Unset: all in process.",
    )
    redis_namespace: str = Field(
        default="tether",
        description="The first part of every Redis key and stream tether writes (<namespace>:budget:, :exact:, "
        ":semantic, :trace:): deployments that share one Redis keep apart by naming themselves differently.",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    budget_fallback: str = Field(
        default="refuse",
        description="What a gateway does with a budgeted LLM request while Redis is unreachable: 'refuse' "
        "(503, the default) or 'share' (enforce 1/gateway_replicas of each budget on this replica's own use "
        "since it started, so the replicas together cannot overspend).",
        pattern="^(refuse|share)$",
    )
    gateway_replicas: int = Field(
        default=1,
        description="How many gateway replicas share the budgets: what budget_fallback='share' divides by.",
        ge=1,
    )
    ray_address: str | None = Field(
        default=None,
        description="host:port of a Ray cluster's head (or 'auto'): every predictive version then runs as a Ray "
        "Serve application instead of a child process (extra 'ray'). Unset: child processes.",
    )
    ray_http_host: str = Field(default="127.0.0.1", description="Where Ray Serve's HTTP proxy listens.")
    ray_http_port: int = Field(default=8000, ge=1, le=65535, description="Ray Serve's HTTP proxy port.")
    ray_deploy: dict[str, Any] = Field(
        default_factory=dict,
        description='Ray Serve deploy config per model, as JSON: {"default": {...}, "MODEL": {...}} with replicas, '
        "min_replicas and max_replicas (autoscaling when both are set), num_cpus and memory_mb per replica.",
    )
    worker_max_batch: int = Field(
        default=64,
        description="The most records a model instance predicts in one batch: requests that arrive while the model "
        "is busy run together (answers and service times stay per request). 1 turns batching off.",
        ge=1,
        le=100_000,
    )
    event_loop: str = Field(
        default="uvloop",
        description="The event loop 'tether serve' and its model instances run on: 'uvloop' (the default, where it "
        "is installed: the socket work of a hop in C) or 'asyncio' (the standard library's).",
        pattern="^(uvloop|asyncio)$",
    )
    embed_threads: int = Field(
        default=1,
        description="Threads torch may use in the serving process for MiniLM (semantic cache, graders, prompt "
        "drift); 0 leaves torch's default of one per core. One keeps background grading, whose OpenMP threads "
        "spin between batches, from taking every core from the event loop.",
        ge=0,
        le=256,
    )
    worker_threads: int = Field(
        default=1,
        description="Native threads (OpenMP, BLAS) per model instance. One serves single requests fastest and keeps "
        "idle spinning threads from stealing CPU from the other instances on the host.",
        ge=1,
        le=256,
    )

    pool_workers: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        description="Pooled worker processes that serve every champion, many models each (one per core by "
        "default); canaries, shadows and versions flagged to run alone get a process of their own. 0: every "
        "version in a process of its own, as before the pool.",
        ge=0,
        le=256,
    )
    pool_memory: str = Field(
        default="auto",
        description="The byte budget of the models the pool holds, shared equally by its workers, as bytes or with "
        "a unit ('2GiB', '800MB'); each model is measured after it loads, and past the budget the least recently "
        "used are evicted (those no routing table names first). 'auto': a quarter of the machine's memory, at "
        "most 8 GiB.",
        pattern=r"^(auto|\d+(\.\d+)?\s*([KMGT]i?B|B)?)$",
    )
    pool_idle_seconds: float = Field(
        default=600.0,
        description="A pooled model no routing table names any more is unloaded after this long without a request.",
        gt=0,
    )
    instance_starts: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        description="How many model instances (processes of their own) may be starting at once; the rest wait.",
        ge=1,
        le=1024,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("database_url", "blob_url")
    @classmethod
    def _empty_is_unset(cls, v: str | None) -> str | None:
        return v or None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'tether.db').absolute()}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or str((self.home / "blobs").absolute())

    @property
    def resolved_signing_key(self) -> Path:
        return self.signing_key or self.home / "keys" / "signing.ed25519"

    def to_env(self) -> dict[str, str | None]:
        """Every setting as the ``TETHER_*`` variable that gives it (None: unset it), for a child process that
        must see exactly this process's settings, whatever the environment or ``tether.toml`` said."""
        import json

        out: dict[str, str | None] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                out[f"TETHER_{name.upper()}"] = None
            elif isinstance(value, Path):
                out[f"TETHER_{name.upper()}"] = str(value.absolute())
            elif isinstance(value, dict | list | bool):
                out[f"TETHER_{name.upper()}"] = json.dumps(value)
            else:
                out[f"TETHER_{name.upper()}"] = str(value)
        return out

    @property
    def pool_budget_bytes(self) -> int:
        """`pool_memory` in bytes."""
        text = self.pool_memory.strip()
        if text == "auto":
            try:
                total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            except (ValueError, OSError, AttributeError):
                total = 8 << 30
            return int(min(8 << 30, total // 4))
        units = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
        units.update({"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40})
        found = re.match(r"\d+(\.\d+)?", text)  # the field's pattern guarantees a number first
        number = found.group() if found is not None else "0"
        unit = text[len(number) :].strip().upper() or "B"
        return int(float(number) * units[unit])

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same file system as the local store, so renames are atomic."""
        return self.home / "tmp"
