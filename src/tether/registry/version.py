"""A model version: name + code + data + weights + flavor + I/O signature + params and metrics.

Its id is SHA-256 over the canonical JSON of all of those (not over the time, author or sequence number),
so the same triad registered twice is the same version, and any change to a stored row is detectable by
recomputing the id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.core.errors import InvalidInputError
from tether.core.hashing import digest_json
from tether.core.types import VersionId
from tether.registry.code import CodeRef
from tether.registry.data import DataSnapshot
from tether.registry.weights import WeightsArtifact

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInputError(
            f"invalid {what} {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 200)",
        )
    return name


def version_id(
    *,
    name: str,
    code_digest: str,
    data_digest: str,
    weights_digest: str,
    flavor: str,
    flavor_config: dict[str, Any],
    input_schema: dict[str, Any],
    output_schema: dict[str, Any],
    params: dict[str, Any],
    metrics: dict[str, Any],
    train_command: str | None,
) -> VersionId:
    return VersionId(
        digest_json(
            {
                "format": "tether-version-v1",
                "name": name,
                "code": code_digest,
                "data": data_digest,
                "weights": weights_digest,
                "flavor": flavor,
                "flavor_config": flavor_config,
                "input_schema": input_schema,
                "output_schema": output_schema,
                "params": params,
                "metrics": metrics,
                "train_command": train_command,
            }
        )
    )


@dataclass(frozen=True)
class ModelVersion:
    id: VersionId
    name: str
    number: int
    code: CodeRef
    data: DataSnapshot
    weights: WeightsArtifact
    flavor: str
    flavor_config: dict[str, Any]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    train_command: str | None
    created_at: datetime
    created_by: str
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.number}"

    def expected_id(self) -> VersionId:
        return version_id(
            name=self.name,
            code_digest=self.code.digest,
            data_digest=self.data.digest,
            weights_digest=self.weights.digest,
            flavor=self.flavor,
            flavor_config=self.flavor_config,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            params=self.params,
            metrics=self.metrics,
            train_command=self.train_command,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "number": self.number,
            "ref": self.ref,
            "aliases": self.aliases,
            "flavor": self.flavor,
            "flavor_config": self.flavor_config,
            "code": {
                "digest": self.code.digest,
                "commit": self.code.commit_sha,
                "repo_url": self.code.repo_url,
                "subdir": self.code.subdir,
                "dirty": self.code.dirty,
                "diff_blob": self.code.diff_blob,
                "archive_blob": self.code.archive_blob,
                "tree_digest": self.code.tree_digest,
                "environment_digest": self.code.environment_digest,
                "python": self.code.environment.get("python"),
                "packages": len(self.code.environment.get("packages", [])),
            },
            "data": {
                "digest": self.data.digest,
                "format": self.data.format,
                "rows": self.data.row_count,
                "size_bytes": self.data.size_bytes,
                "files": self.data.file_count,
                "schema": self.data.schema,
            },
            "weights": {
                "digest": self.weights.digest,
                "size_bytes": self.weights.size_bytes,
                "files": self.weights.file_count,
                "signed": bool(self.weights.signature),
                "public_key": self.weights.public_key,
            },
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "params": self.params,
            "metrics": self.metrics,
            "train_command": self.train_command,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }
