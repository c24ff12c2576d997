"""Settings, errors, ids, clocks and hashing primitives. Imports no other tether package."""

from tether.core.clock import Clock, ManualClock, SystemClock
from tether.core.errors import (
    ConflictError,
    ExternalCommandError,
    ImmutableError,
    IntegrityError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    PermissionDeniedError,
    TetherError,
)
from tether.core.hashing import (
    Manifest,
    ManifestEntry,
    canonical_json,
    digest_json,
    hash_file,
    hash_stream,
    hash_tree,
    sha256_bytes,
)
from tether.core.ids import TraceIdGenerator, trace_id_time_ms
from tether.core.progress import NoProgress, ProgressReporter
from tether.core.settings import Settings
from tether.core.signing import SigningKey, verify_signature
from tether.core.types import Digest, TraceId, VersionId, short

__all__ = [
    "Clock",
    "ConflictError",
    "Digest",
    "ExternalCommandError",
    "ImmutableError",
    "IntegrityError",
    "InvalidInputError",
    "Manifest",
    "ManifestEntry",
    "ManualClock",
    "MissingExtraError",
    "NoProgress",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressReporter",
    "Settings",
    "SigningKey",
    "SystemClock",
    "TetherError",
    "TraceId",
    "TraceIdGenerator",
    "VersionId",
    "canonical_json",
    "digest_json",
    "hash_file",
    "hash_stream",
    "hash_tree",
    "sha256_bytes",
    "short",
    "trace_id_time_ms",
    "verify_signature",
]
