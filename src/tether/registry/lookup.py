"""Finding registered versions: references resolved, rows read back and checked against their ids.

`VersionLookup` is the reading half of `tether.registry.Registry` (a base class, so every call site keeps
``registry.get(...)``); it holds no state of its own beyond the store.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping, select

from tether.core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from tether.core.settings import Settings
from tether.core.types import VersionId, short
from tether.registry import aliases as alias_ops
from tether.registry import integrity
from tether.registry.code import CodeRef
from tether.registry.data import DataSnapshot
from tether.registry.version import ModelVersion, check_name
from tether.registry.weights import WeightsArtifact
from tether.store import Store
from tether.store.tables import code_refs, data_snapshots, model_versions, weights_artifacts

_T = TypeVar("_T")
_HEX = frozenset("0123456789abcdef")


class VersionLookup:
    """Resolve references and read versions, each checked to still hash to its id."""

    store: Store
    settings: Settings

    def _exists(self, vid: str, conn: Connection | None = None) -> bool:
        q = select(model_versions.c.id).where(model_versions.c.id == vid)
        if conn is not None:
            return conn.execute(q).first() is not None
        with self.store.db.connect() as c:
            return c.execute(q).first() is not None

    def resolve(self, ref: str) -> VersionId:
        """A version id from ``NAME@ALIAS``, ``NAME@latest``, ``NAME/NUMBER`` or an id prefix (6+ hex)."""
        ref = ref.strip()
        with self.store.db.connect() as conn:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                if alias == "latest":
                    row = conn.execute(
                        select(model_versions.c.id)
                        .where(model_versions.c.name == name)
                        .order_by(model_versions.c.number.desc())
                        .limit(1)
                    ).first()
                    if row is None:
                        raise self._unknown_model(conn, name)
                    return VersionId(row[0])
                vid = alias_ops.current(conn, name, alias)
                if vid is None:
                    raise NotFoundError(
                        f"model {name!r} has no alias {alias!r}",
                        hint=f"see 'tether alias history {name}', or set it with 'tether alias set'",
                    )
                return vid
            if "/" in ref:
                name, num = ref.rsplit("/", 1)
                if not num.isdigit():
                    raise InvalidInputError(f"bad version reference {ref!r}", hint="use NAME/NUMBER, e.g. fraud/3")
                row = conn.execute(
                    select(model_versions.c.id).where(
                        model_versions.c.name == name, model_versions.c.number == int(num)
                    )
                ).first()
                if row is None:
                    raise NotFoundError(f"no version {ref}", hint=f"list versions with 'tether versions {name}'")
                return VersionId(row[0])
            low = ref.lower()
            if len(low) >= 6 and set(low) <= _HEX:
                rows = conn.execute(
                    select(model_versions.c.id).where(model_versions.c.id.like(low + "%")).limit(5)
                ).all()
                if len(rows) == 1:
                    return VersionId(rows[0][0])
                if len(rows) > 1:
                    raise ConflictError(
                        f"version id prefix {ref!r} is ambiguous ({', '.join(short(r[0]) for r in rows)})",
                        hint="give more characters of the id",
                    )
        raise NotFoundError(
            f"unknown version {ref!r}",
            hint="refer to a version as NAME@ALIAS, NAME@latest, NAME/NUMBER or an id prefix; "
            "list them with 'tether versions'",
        )

    def _refuse_unsigned_twin(self, weights_digest: str, name: str) -> None:
        """``--sign`` on weights already stored unsigned: a signature cannot be added to immutable records, and
        silently returning the unsigned version would let a caller believe it is signed."""
        with self.store.db.connect() as conn:
            row = conn.execute(
                select(weights_artifacts.c.signature).where(weights_artifacts.c.digest == weights_digest)
            ).first()
            if row is None or row[0] is not None:
                return
            used = conn.execute(
                select(model_versions.c.name, model_versions.c.number).where(
                    model_versions.c.weights_digest == weights_digest
                )
            ).first()
        where = f" (by {used[0]}/{used[1]})" if used else ""
        raise ConflictError(
            f"these weights are already registered unsigned{where}; a signature cannot be added to immutable records",
            hint=f"register {name} without --sign, or sign a new build of the weights",
        )

    def _unknown_model(self, conn: Connection, name: str) -> NotFoundError:
        names = [r[0] for r in conn.execute(select(model_versions.c.name).distinct())]
        return NotFoundError(f"no model named {name!r}", hint=f"known models: {', '.join(sorted(names)) or 'none yet'}")

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names, after checking its stored row still hashes to its id."""
        vid = self.resolve(ref)
        with self.store.db.connect() as conn:
            row = conn.execute(select(model_versions).where(model_versions.c.id == vid)).mappings().one()
            mv = self._build(conn, row, alias_ops.of_versions(conn, row["name"]).get(vid, []))
        self._check_rows(mv)
        return mv

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``), each checked; raises IntegrityError naming what is changed or missing."""
        listed, problems = self.check_versions(name)
        if problems:
            raise IntegrityError(
                f"{len(problems)} problem(s) with the registered versions: " + "; ".join(problems),
                expected="every version intact",
                actual=f"{len(problems)} problem(s)",
                hint="restore the database from a backup; 'tether versions' lists the intact ones",
            )
        return listed

    def check_versions(self, name: str | None = None) -> tuple[list[ModelVersion], list[str]]:
        """The intact versions (of ``name``), and what is wrong with the others: changed rows, deleted ones."""
        with self.store.db.connect() as conn:
            q = select(model_versions).order_by(model_versions.c.name, model_versions.c.number)
            if name is not None:
                check_name(name)
                q = q.where(model_versions.c.name == name)
            rows = conn.execute(q).mappings().all()
            if name is not None and not rows:
                raise self._unknown_model(conn, name)
            tags = alias_ops.of_versions(conn, name)
            legs: dict[tuple[str, str], Any] = {}
            built = [self._build(conn, r, tags.get(r["id"], []), legs) for r in rows]
            problems = [p for p in map(integrity.row_problem, built) if p]
            problems += integrity.missing(conn, built, name)
        bad = {mv.id for mv in built if integrity.row_problem(mv)}
        return [mv for mv in built if mv.id not in bad], problems

    def get_many(
        self, ids: list[str], aliases: dict[str, list[str]] | None = None
    ) -> tuple[dict[str, ModelVersion], list[str]]:
        """Versions by id in four queries (a page of a listing), each checked to hash to its id; with the
        problems: rows changed behind tether's back, ids that are named but missing. ``aliases``: version id ->
        the aliases that name it, as the caller read them."""
        out: dict[str, ModelVersion] = {}
        problems: list[str] = []
        want = sorted(set(ids))
        with self.store.db.connect() as conn:
            rows: list[RowMapping] = []
            for i in range(0, len(want), 500):
                q = select(model_versions).where(model_versions.c.id.in_(want[i : i + 500]))
                rows += conn.execute(q).mappings().all()
            legs: dict[tuple[str, str], Any] = {}
            for table, column, cls in (
                (code_refs, "code_digest", CodeRef),
                (data_snapshots, "data_digest", DataSnapshot),
                (weights_artifacts, "weights_digest", WeightsArtifact),
            ):
                digests = sorted({r[column] for r in rows})
                for i in range(0, len(digests), 500):
                    q = select(table).where(table.c.digest.in_(digests[i : i + 500]))
                    for leg in conn.execute(q).mappings():
                        legs[(table.name, leg["digest"])] = from_row(cls, leg)
            for r in rows:
                mv = self._build(conn, r, (aliases or {}).get(r["id"], []), legs)
                problem = integrity.row_problem(mv)
                if problem:
                    problems.append(problem)
                else:
                    out[mv.id] = mv
        for vid in want:
            if vid not in out and not any(vid[:12] in p for p in problems):
                problems.append(f"version {short(vid)}… is named but missing (deleted?)")
        return out, problems

    def _build(
        self, conn: Connection, row: RowMapping, tags: list[str], legs: dict[tuple[str, str], Any] | None = None
    ) -> ModelVersion:
        """A version from its row and its triad's rows; ``legs`` caches the triad rows across many versions
        (a listing reads each distinct code, data and weights row once, not three queries per version)."""
        legs = {} if legs is None else legs
        found = []
        for table, column in (
            (code_refs, "code_digest"),
            (data_snapshots, "data_digest"),
            (weights_artifacts, "weights_digest"),
        ):
            key = (table.name, row[column])
            if key not in legs:
                leg = conn.execute(select(table).where(table.c.digest == row[column])).mappings().one()
                legs[key] = from_row(
                    {code_refs: CodeRef, data_snapshots: DataSnapshot}.get(table, WeightsArtifact), leg
                )
            found.append(legs[key])
        code, data, weights = found
        return ModelVersion(
            id=VersionId(row["id"]),
            name=row["name"],
            number=row["number"],
            code=code,
            data=data,
            weights=weights,
            flavor=row["flavor"],
            flavor_config=row["flavor_config"],
            input_schema=row["input_schema"],
            output_schema=row["output_schema"],
            params=row["params"],
            metrics=row["metrics"],
            train_command=row["train_command"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            aliases=tags,
        )

    @staticmethod
    def _check_rows(mv: ModelVersion) -> None:
        """Detect rows changed behind tether's back (e.g. with the immutability triggers dropped)."""
        if (expected := mv.expected_id()) != mv.id:
            raise IntegrityError(
                f"model version {short(mv.id)}… no longer hashes to its id: its database row was changed",
                expected=mv.id,
                actual=expected,
                version_id=mv.id,
                hint="restore the database from a backup; do not use this version",
            )
        c = mv.code
        code_expected = CodeRef.compute_digest(c.commit_sha, c.tree_digest, c.diff_blob, c.environment_digest, c.subdir)
        if code_expected != c.digest:
            raise IntegrityError(
                f"code record {short(c.digest)}… of version {short(mv.id)}… was changed in the database",
                expected=c.digest,
                actual=code_expected,
                hint="restore the database from a backup",
            )


def from_row(cls: type[_T], row: Any) -> _T:
    """A dataclass from a database row whose columns include the dataclass's field names."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
