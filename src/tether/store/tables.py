"""The metadata tables. Migrations under ``migrations/versions`` create and evolve them; this module is the
query-side description (SQLAlchemy Core) and must match the newest migration (a test checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData()

DIGEST = String(64)

code_refs = Table(
    "code_refs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("commit_sha", String(64), nullable=False),
    Column("repo_url", Text),
    Column("subdir", Text, nullable=False),
    Column("dirty", Boolean, nullable=False),
    Column("diff_blob", DIGEST),
    Column("archive_blob", DIGEST, nullable=False),
    Column("tree_digest", DIGEST, nullable=False),
    Column("environment", JSON, nullable=False),
    Column("environment_digest", DIGEST, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

data_snapshots = Table(
    "data_snapshots",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("format", String(16), nullable=False),
    Column("schema", JSON, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

weights_artifacts = Table(
    "weights_artifacts",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("signature", String(128)),
    Column("public_key", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", DIGEST, primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("code_digest", DIGEST, ForeignKey("code_refs.digest"), nullable=False),
    Column("data_digest", DIGEST, ForeignKey("data_snapshots.digest"), nullable=False),
    Column("weights_digest", DIGEST, ForeignKey("weights_artifacts.digest"), nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("flavor_config", JSON, nullable=False),
    Column("input_schema", JSON, nullable=False),
    Column("output_schema", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("train_command", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("name", "number", name="uq_model_versions_name_number"),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("version_id", DIGEST, ForeignKey("model_versions.id")),
    Column("previous_version_id", DIGEST),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("gate_report_id", DIGEST),
    Column("forced", Boolean, nullable=False, server_default=false()),
)

gate_reports = Table(
    "gate_reports",
    metadata,
    Column("id", DIGEST, primary_key=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("candidate_id", DIGEST, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("champion_id", DIGEST, ForeignKey("model_versions.id")),
    Column("spec_digest", DIGEST, nullable=False),
    Column("gold_digests", JSON, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("report_blob", DIGEST, nullable=False),
    Column("html_blob", DIGEST, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    #: The model's gate policy this report ran under (None: an ad-hoc spec, which never moves ``champion``).
    Column("policy_digest", DIGEST),
)

#: The gate policy of each model over time: which spec and gold data a PASS must come from. Insert-only; the
#: newest row is in force.
gate_policies = Table(
    "gate_policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("digest", DIGEST, nullable=False),
    Column("spec_blob", DIGEST, nullable=False),
    Column("gold_digests", JSON, nullable=False),
    Column("previous_digest", DIGEST),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

routing = Table(
    "routing",
    metadata,
    Column("model_name", String(200), primary_key=True),
    Column("champion_id", DIGEST, ForeignKey("model_versions.id"), nullable=False),
    Column("canary_id", DIGEST, ForeignKey("model_versions.id")),
    Column("canary_bp", Integer, nullable=False, server_default="0"),
    Column("shadow_id", DIGEST, ForeignKey("model_versions.id")),
    Column("shadow_bp", Integer, nullable=False, server_default="0"),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("salt", String(200), nullable=False, server_default=""),
    Column("mirror_bp", Integer, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
    #: Stamped by a database trigger with the ``routing`` change counter at every write (see `changes`).
    Column("seq", BigInteger, nullable=False, server_default="0", index=True),
    #: A retired model keeps its row as a tombstone, so a reader of what changed learns that it is gone.
    Column("retired", Boolean, nullable=False, server_default=false()),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("candidate_id", DIGEST, ForeignKey("model_versions.id"), nullable=False),
    Column("champion_id", DIGEST, ForeignKey("model_versions.id"), nullable=False),
    Column("state", String(20), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("step_started_at", UTCDateTime, nullable=False),
    Column("gate_report_id", DIGEST),
    Column("forced", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    #: Bumped by every decision on the rollout; a decision names the revision it judged (see rollout.fence).
    Column("revision", Integer, nullable=False, server_default="0"),
    #: After a rollback: when the candidate's diagnostic shadow ends (None: it has ended, or there was none).
    Column("shadow_until", UTCDateTime),
)

rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("from_bp", Integer, nullable=False),
    Column("to_bp", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", DIGEST, nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("tenant", String(200)),  # what its budgets, caches and ledger rows are partitioned by (null: its name)
    Column("expires_at", UTCDateTime),
    Column("rotated_from", String(16)),  # the key this one replaced
    # Reads every tenant's ledger, budgets, graded interactions and audit records (admin keys always).
    Column("all_tenants", Boolean, nullable=False, server_default=false()),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("version_id", DIGEST, ForeignKey("model_versions.id"), primary_key=True),
    Column("url", Text, nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

baseline_profiles = Table(
    "baseline_profiles",
    metadata,
    Column("version_id", DIGEST, ForeignKey("model_versions.id"), primary_key=True),
    Column("source", String(20), primary_key=True),
    Column("data_digest", DIGEST, nullable=False),
    Column("profile_digest", DIGEST, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

live_profiles = Table(
    "live_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("version_id", DIGEST, ForeignKey("model_versions.id"), nullable=False),
    Column("segment", String(300), nullable=False),
    Column("slice_start", UTCDateTime, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("issues", JSON, nullable=False),
    Column("replica", String(64), nullable=False),
)

monitor_configs = Table(
    "monitor_configs",
    metadata,
    Column("model_name", String(200), primary_key=True),
    Column("config", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False, server_default="0", index=True),
)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("version_id", DIGEST, ForeignKey("model_versions.id"), nullable=False),
    Column("feature", String(300), nullable=False),
    Column("segment", String(300), nullable=False),
    Column("test", String(40), nullable=False),
    Column("statistic", Float, nullable=False),
    Column("p_value", Float),
    Column("effect", Float, nullable=False),
    Column("min_shift", Float, nullable=False),
    Column("baseline_value", Float),
    Column("live_value", Float),
    Column("live_rows", BigInteger, nullable=False),
    Column("priority", String(10), nullable=False),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("evidence", JSON, nullable=False),
)

anomaly_resolutions = Table(
    "anomaly_resolutions",
    metadata,
    Column("anomaly_id", Integer, ForeignKey("anomalies.id"), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
)

#: One counter per topic (a table), moved by database triggers with every write to it; ``routing``,
#: ``monitor_configs`` and ``placements`` rows are stamped with the new value in their ``seq`` (migration 0013).
changes = Table(
    "changes",
    metadata,
    Column("topic", String(40), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

#: Versions that must run in an instance of their own (``alone``), whatever their role; or, with ``alone`` false,
#: that may be pooled like any champion.
placements = Table(
    "placements",
    metadata,
    Column("version_id", DIGEST, ForeignKey("model_versions.id"), primary_key=True),
    Column("alone", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False, server_default="0", index=True),
)

#: What happened to a model's serving outside a rollout: deployed, retired, a version flagged to run alone or
#: pooled, a diagnostic shadow ended. Insert-only; on the audit trail (``tether.audit.bridge``).
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("kind", String(30), nullable=False),
    Column("version_id", DIGEST),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", JSON, nullable=False),
)

#: Who owns a model and how to find it among thousands: an owner, a description, tags (`model_tags`), and how old
#: its champion may grow before the fleet view flags it.
model_info = Table(
    "model_info",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), index=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("max_champion_age_days", Float),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

model_tags = Table(
    "model_tags",
    metadata,
    Column("model_name", String(200), primary_key=True),
    Column("tag", String(100), primary_key=True, index=True),
)

#: Tables whose rows can never change once written; enforced by database triggers (re-asserted over all of
#: them by migration 0007, with TRUNCATE refused on PostgreSQL).
IMMUTABLE_TABLES = (
    "code_refs",
    "data_snapshots",
    "weights_artifacts",
    "model_versions",
    "alias_events",
    "gate_reports",
    "rollout_events",
    "baseline_profiles",
    "llm_ledger",
    "anomalies",
    "anomaly_resolutions",
    "gate_policies",
    "grader_versions",
    "grader_scores",
    "prompt_samples",
    "anchor_sets",
    "deployment_events",
)

llm_ledger = Table(
    "llm_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(64), nullable=False, unique=True),
    Column("at", UTCDateTime, nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("key_id", String(64)),
    Column("model_name", String(200), nullable=False),
    Column("version_id", DIGEST, nullable=False),
    Column("status", String(20), nullable=False),
    Column("cache", String(20), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("saved_tokens", Integer, nullable=False),
    Column("saved_cost", Float, nullable=False),
    Column("trimmed_tokens", Integer, nullable=False),
    Column("latency_s", Float, nullable=False),
)

llm_budgets = Table(
    "llm_budgets",
    metadata,
    Column("scope", String(260), primary_key=True),
    Column("requests_per_minute", Integer),
    Column("tokens_per_day", BigInteger),
    Column("cost_per_month", Float),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)


grader_versions = Table(
    "grader_versions",
    metadata,
    Column("id", DIGEST, primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("config", JSON, nullable=False),
    Column("code_digest", DIGEST, nullable=False),
    Column("weights_digest", DIGEST),
    Column("data_digest", DIGEST),
    Column("report", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("name", "number", name="uq_grader_versions_name_number"),
)

grader_scores = Table(
    "grader_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(64), nullable=False, index=True),
    Column("grader_id", DIGEST, ForeignKey("grader_versions.id"), nullable=False, index=True),
    Column("metric", String(120), nullable=False),
    Column("value", Float),
    Column("error", Text),
    Column("origin", String(80), nullable=False),  # live | anchor:<run> | gate:<report>
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("version_id", DIGEST, nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("arm", String(20), nullable=False),
    Column("cache", String(20), nullable=False),
    Column("stratum", String(300), nullable=False),
    Column("inclusion", Float, nullable=False),  # the probability this interaction was sampled
    Column("detail", JSON, nullable=False),
    UniqueConstraint("trace_id", "grader_id", "metric", "origin", name="uq_grader_scores_once"),
)

prompt_samples = Table(
    "prompt_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(64), nullable=False, unique=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("version_id", DIGEST, nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("prompt", Text, nullable=False),
    Column("inclusion", Float, nullable=False),
)

anchor_sets = Table(
    "anchor_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("digest", DIGEST, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires", Float, nullable=False),
)

metric_slices = Table(
    "metric_slices",
    metadata,
    Column("replica", String(200), primary_key=True),
    Column("model_name", String(200), primary_key=True),
    Column("version_id", DIGEST, primary_key=True),
    Column("arm", String(40), primary_key=True),
    Column("slice", BigInteger, primary_key=True),
    Column("tally", JSON, nullable=False),
    Column("streak", Integer, nullable=False),
    Column("published", Float, nullable=False, index=True),
)

replicas = Table(
    "replicas",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("started", Float, nullable=False),
    Column("seen", Float, nullable=False),
    Column("info", JSON, nullable=False),
)
