"""`Registry`: register, find, alias, load and reproduce model versions.

This is the one entry point the CLI, the API and user code share. Registration validates and hashes
everything first (git state, data readability, weights manifest, flavor load and a smoke prediction), so bad
input is refused before a single byte is stored; then blobs are written (atomically, content-addressed) and
the rows are inserted in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
from sqlalchemy import Connection, RowMapping, func, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tether.core.clock import Clock, SystemClock
from tether.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from tether.core.hashing import Manifest, canonical_json, hash_tree
from tether.core.progress import NoProgress, ProgressReporter
from tether.core.settings import Settings
from tether.core.signing import SigningKey
from tether.core.types import Digest, VersionId, short
from tether.registry import aliases as alias_ops
from tether.registry import code as code_mod
from tether.registry import data as data_mod
from tether.registry import integrity
from tether.registry import policy as policy_ops
from tether.registry import schema as schema_mod
from tether.registry.code import CodeRef
from tether.registry.data import DataSnapshot
from tether.registry.flavors import LoadedModel, get_flavor
from tether.registry.version import ModelVersion, check_name, version_id
from tether.registry.weights import WeightsArtifact
from tether.store import Store
from tether.store.tables import code_refs, data_snapshots, model_versions, weights_artifacts

SMOKE_ROWS = 64
_T = TypeVar("_T")
_HEX = frozenset("0123456789abcdef")


class Registry:
    """The triad registry over a `Store`."""

    def __init__(self, store: Store, *, clock: Clock | None = None, progress: ProgressReporter | None = None) -> None:
        self.store = store
        self.settings = store.settings
        self.clock = clock or SystemClock()
        self.progress: ProgressReporter = progress or NoProgress()

    @classmethod
    def open(cls, settings: Settings | None = None, **kwargs: Any) -> Registry:
        return cls(Store.open(settings), **kwargs)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------
    # registration
    # ------------------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        *,
        code: str | Path,
        data: str | Path | Any,
        weights: str | Path,
        flavor: str,
        target: str | list[str] | None = None,
        exclude: list[str] | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        train_command: str | None = None,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        flavor_options: dict[str, Any] | None = None,
        allow_dirty: bool = False,
        sign: bool = False,
        actor: str | None = None,
    ) -> ModelVersion:
        """Lock code, data and weights into a model version; the same triad returns the same version.

        ``target`` names the label column(s) and ``exclude`` other columns that are not model inputs (ids,
        protected attributes kept for fairness checks); the input schema is every other column unless
        ``input_schema`` declares it.
        """
        check_name(name)
        fl = get_flavor(flavor)
        params = _json_mapping(params, "params")
        metrics = _json_mapping(metrics, "metrics")
        targets = [target] if isinstance(target, str) else list(target or [])
        not_inputs = targets + list(exclude or [])
        weights_path = Path(weights).absolute()
        if not weights_path.exists():
            raise InvalidInputError(f"weights not found: {weights_path}", hint="pass --weights with a file or folder")
        workers = self.settings.hash_workers

        cap = code_mod.capture(code, allow_dirty=allow_dirty, hash_workers=workers)
        with self._scratch() as scratch:
            data_path = self._data_path(data, scratch)
            with self.progress.task("hashing data", _size(data_path)) as tick:
                dcap = data_mod.inspect(data_path, hash_workers=workers, progress=tick)
            missing_targets = [t for t in not_inputs if t not in {c["name"] for c in dcap.schema}]
            if missing_targets:
                raise InvalidInputError(
                    f"target or excluded column(s) {missing_targets} not in the data",
                    hint=f"the data has columns {[c['name'] for c in dcap.schema]}",
                )
            with self.progress.task("hashing weights", _size(weights_path)) as tick:
                wmanifest = hash_tree(weights_path, workers=workers, progress=tick)
            code_dir = cap.top / cap.subdir
            flavor_config = fl.configure(weights_path, code_dir, dict(flavor_options or {}))
            if input_schema is None:
                input_schema = schema_mod.from_data_schema(
                    dcap.schema, exclude=not_inputs, null_counts=_null_counts(dcap)
                )
            else:
                input_schema = schema_mod.validate_schema(input_schema, what="input schema")
            inferred_output = self._smoke_predict(fl, weights_path, code_dir, flavor_config, input_schema, dcap)
            output_schema = (
                inferred_output
                if output_schema is None
                else schema_mod.validate_schema(output_schema, what="output schema")
            )
            signature = public_key = None
            if sign:
                key = SigningKey.load(self.settings.resolved_signing_key)
                signature, public_key = key.sign(wmanifest.canonical_bytes()), key.public_key_hex

            code_digest, diff_digest, env_digest = code_mod.code_digest_of(cap)
            vid = version_id(
                name=name,
                code_digest=code_digest,
                data_digest=dcap.manifest.root_digest,
                weights_digest=wmanifest.root_digest,
                flavor=fl.name,
                flavor_config=flavor_config,
                input_schema=input_schema,
                output_schema=output_schema,
                params=params,
                metrics=metrics,
                train_command=train_command,
            )
            if sign:
                self._refuse_unsigned_twin(wmanifest.root_digest, name)
            if self._exists(vid):
                return self.get(vid)

            # Everything is valid: store blobs (atomic, idempotent), then rows in one transaction.
            archive_tar = scratch / "code.tar"
            code_mod.archive(cap.top, cap.commit_sha, archive_tar)
            archive_blob, _ = self.store.blobs.put_file(archive_tar)
            if cap.diff is not None:
                self.store.blobs.put_bytes(cap.diff)
            self.store.blobs.put_bytes(cap.manifest.canonical_bytes())
            self._put_files("storing data", dcap.files, dcap.manifest)
            self._put_files("storing weights", _files_of(weights_path, wmanifest), wmanifest)

            now = self.clock.now()
            code_row = {
                "digest": code_digest,
                "commit_sha": cap.commit_sha,
                "repo_url": cap.repo_url,
                "subdir": cap.subdir,
                "dirty": cap.dirty,
                "diff_blob": diff_digest,
                "archive_blob": archive_blob,
                "tree_digest": cap.manifest.root_digest,
                "environment": cap.environment,
                "environment_digest": env_digest,
                "created_at": now,
            }
            data_row = _data_row(dcap, now)
            weights_row = {
                "digest": wmanifest.root_digest,
                "size_bytes": wmanifest.total_size,
                "file_count": len(wmanifest.entries),
                "signature": signature,
                "public_key": public_key,
                "created_at": now,
            }
            version_row = {
                "id": vid,
                "name": name,
                "code_digest": code_digest,
                "data_digest": data_row["digest"],
                "weights_digest": weights_row["digest"],
                "flavor": fl.name,
                "flavor_config": flavor_config,
                "input_schema": input_schema,
                "output_schema": output_schema,
                "params": params,
                "metrics": metrics,
                "train_command": train_command,
                "created_at": now,
                "created_by": actor or self.settings.actor,
            }
            self._insert_version(code_row, data_row, weights_row, version_row)
        return self.get(vid)

    def add_data(self, data: str | Path | Any) -> DataSnapshot:
        """Snapshot a dataset on its own (a gold set, say): stored whole, immutable, named by its digest."""
        with self._scratch() as scratch:
            path = self._data_path(data, scratch)
            with self.progress.task("hashing data", _size(path)) as tick:
                dcap = data_mod.inspect(path, hash_workers=self.settings.hash_workers, progress=tick)
            self._put_files("storing data", dcap.files, dcap.manifest)
            row = _data_row(dcap, self.clock.now())
            for attempt in range(2):
                try:
                    with self.store.db.begin() as conn:
                        q = select(data_snapshots.c.digest).where(data_snapshots.c.digest == row["digest"])
                        if conn.execute(q).first() is None:
                            conn.execute(insert(data_snapshots).values(**row))
                    break
                except SAIntegrityError:
                    if attempt:
                        raise
        return self.data_snapshot(row["digest"])

    def data_snapshot(self, digest: str) -> DataSnapshot:
        with self.store.db.connect() as conn:
            d = conn.execute(select(data_snapshots).where(data_snapshots.c.digest == digest)).mappings().first()
        if d is None:
            raise NotFoundError(f"no data snapshot {short(digest)}…", hint="add one with 'tether data add PATH'")
        return from_row(DataSnapshot, d)

    def _insert_version(
        self,
        code_row: dict[str, Any],
        data_row: dict[str, Any],
        weights_row: dict[str, Any],
        row: dict[str, Any],
    ) -> None:
        for attempt in range(3):
            try:
                with self.store.db.begin() as conn:
                    if self._exists(row["id"], conn):
                        return
                    for table, values in (
                        (code_refs, code_row),
                        (data_snapshots, data_row),
                        (weights_artifacts, weights_row),
                    ):
                        if (
                            conn.execute(select(table.c.digest).where(table.c.digest == values["digest"])).first()
                            is None
                        ):
                            conn.execute(insert(table).values(**values))
                    number = conn.execute(
                        select(func.coalesce(func.max(model_versions.c.number), 0)).where(
                            model_versions.c.name == row["name"]
                        )
                    ).scalar_one()
                    conn.execute(insert(model_versions).values(**row, number=int(number) + 1))
                return
            except SAIntegrityError:
                # A concurrent registration took the same number or inserted the same content: retry.
                if attempt == 2:
                    raise

    def _smoke_predict(
        self,
        fl: Any,
        weights: Path,
        code_dir: Path,
        flavor_config: dict[str, Any],
        input_schema: dict[str, Any],
        dcap: data_mod.DataCapture,
    ) -> dict[str, Any]:
        """Load the model and predict on the first rows of the training data; infer the output schema."""
        needed = [f["name"] for f in input_schema["fields"]]
        have = {c["name"] for c in dcap.schema}
        if missing := [c for c in needed if c not in have]:
            raise InvalidInputError(f"input schema names column(s) {missing} that the data lacks")
        rows = getattr(fl, "smoke_rows", SMOKE_ROWS)  # a flavor whose predictions are costly asks for fewer
        head = data_mod.read_head(dcap.root, dcap.format, rows).select(needed).to_pandas()
        model = LoadedModel("unregistered", fl.load(weights, code_dir, flavor_config), input_schema)
        try:
            out = model.predict(head)
        except InvalidInputError:
            raise
        except Exception as e:
            raise InvalidInputError(
                f"the {fl.name} model could not predict on the first {len(head)} rows of the training data: "
                f"{type(e).__name__}: {e}",
                hint="check --flavor, --target and that the weights match this data",
            ) from None
        fields = [
            {"name": str(c), "type": schema_mod.type_of_dtype(out[c].dtype), "required": True} for c in out.columns
        ]
        return {"fields": fields}

    def _put_files(self, what: str, files: list[tuple[str, Path]], manifest: Manifest) -> None:
        expected = {e.path: e.digest for e in manifest.entries}
        with self.progress.task(what, manifest.total_size) as tick:
            for rel, path in files:
                digest, _ = self.store.blobs.put_file(path, progress=tick)
                if digest != expected[rel]:
                    raise ConflictError(
                        f"{path} changed while it was being registered (hashed {short(expected[rel])}, "
                        f"stored {short(digest)})",
                        hint="register again once nothing is writing to the file",
                    )
        self.store.blobs.put_bytes(manifest.canonical_bytes())

    def _data_path(self, data: Any, scratch: Path) -> Path:
        if isinstance(data, str | Path):
            return Path(data).absolute()
        if isinstance(data, pa.Table) or type(data).__name__ == "DataFrame":
            return data_mod.write_table(data, scratch / "data" / "snapshot.parquet")
        raise InvalidInputError(
            f"cannot snapshot data of type {type(data).__name__}",
            hint="pass a path to Parquet/CSV files, a pandas DataFrame or a pyarrow Table",
        )

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="scratch-", dir=self.settings.tmp_dir))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------
    # lookup
    # ------------------------------------------------------------------------------------------------
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

    # ------------------------------------------------------------------------------------------------
    # aliases
    # ------------------------------------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        ref: str,
        *,
        reason: str,
        actor: str | None = None,
        force: bool = False,
    ) -> alias_ops.AliasEvent:
        """Point ``name@alias`` at the version ``ref``; the move is kept with actor, time and reason.

        Moving ``champion`` needs a PASS gate report bound to this version and the current champion (none,
        for the first one); ``force=True`` skips that check and is recorded on the move.
        """
        alias_ops.check_alias(alias)
        alias_ops.check_reason(reason)
        mv = self.get(ref)
        if mv.name != name:
            raise InvalidInputError(
                f"version {mv.ref} ({short(mv.id)}…) belongs to model {mv.name!r}, not {name!r}",
                hint=f"use a version of {name}",
            )
        with self.store.db.begin() as conn:
            report_id = None
            if alias in alias_ops.GATED:
                current = alias_ops.current(conn, name, alias)
                if current == mv.id:
                    raise InvalidInputError(f"{name}@{alias} already points at {mv.ref}")
                try:
                    report_id = policy_ops.promotion_report(conn, self.store.blobs, name, mv.id, current)
                except ConflictError:
                    if not force:
                        raise
            return alias_ops.move(
                conn,
                model_name=name,
                alias=alias,
                version_id=mv.id,
                actor=actor or self.settings.actor,
                reason=reason,
                at=self.clock.now(),
                gate_report_id=report_id,
                forced=report_id is None and alias in alias_ops.GATED,
            )

    def remove_alias(self, name: str, alias: str, *, reason: str, actor: str | None = None) -> alias_ops.AliasEvent:
        alias_ops.check_alias(alias)
        with self.store.db.begin() as conn:
            return alias_ops.move(
                conn,
                model_name=name,
                alias=alias,
                version_id=None,
                actor=actor or self.settings.actor,
                reason=reason,
                at=self.clock.now(),
            )

    # ------------------------------------------------------------------------------------------------
    # gate policies
    # ------------------------------------------------------------------------------------------------
    def set_gate_policy(
        self, name: str, spec: dict[str, Any], *, reason: str, role: str, actor: str | None = None
    ) -> policy_ops.GatePolicy:
        """Make ``spec`` (a gate spec as JSON, gold pinned to digests) the policy of ``name``; see `policy`."""
        check_name(name)
        with self.store.db.begin() as conn:
            return policy_ops.set_policy(
                conn,
                self.store.blobs,
                model_name=name,
                spec=spec,
                actor=actor or self.settings.actor,
                role=role,
                reason=reason,
                at=self.clock.now(),
            )

    def gate_policy(self, name: str) -> policy_ops.GatePolicy | None:
        with self.store.db.connect() as conn:
            return policy_ops.current(conn, name)

    def gate_policy_history(self, name: str) -> list[policy_ops.GatePolicy]:
        with self.store.db.connect() as conn:
            return policy_ops.history(conn, name)

    def gate_policy_spec(self, policy: policy_ops.GatePolicy) -> dict[str, Any]:
        return policy_ops.load_spec(self.store.blobs, policy)

    def alias_history(self, name: str, alias: str | None = None) -> list[alias_ops.AliasEvent]:
        with self.store.db.connect() as conn:
            return alias_ops.history(conn, name, alias)

    def alias_at(self, name: str, alias: str, at: datetime) -> VersionId | None:
        """Which version ``name@alias`` named at time ``at``."""
        if at.tzinfo is None:
            raise InvalidInputError("give the time with a timezone (e.g. 2026-11-26T10:00:00+00:00)")
        with self.store.db.connect() as conn:
            return alias_ops.at_time(conn, name, alias, at)

    # ------------------------------------------------------------------------------------------------
    # materialising and loading
    # ------------------------------------------------------------------------------------------------
    def manifest(self, digest: Digest, what: str) -> Manifest:
        """A stored manifest, verified: its blob is named by the root digest it must hash to."""
        return Manifest.from_canonical_bytes(self.store.blobs.get_bytes(digest, what=f"{what} manifest"))

    def materialize_weights(self, mv: ModelVersion, dest: Path, *, only: Callable[[str], bool] | None = None) -> Path:
        """Write the verified weights under ``dest``; returns the path a flavor loads (file or folder).
        ``only(path)`` selects some files (an LLM gateway needs the tokenizer, not the weights)."""
        manifest = self.manifest(mv.weights.digest, "weights")
        mv.weights.verify_signature(manifest)
        self._materialize(manifest, dest, f"weights of {mv.ref}", only)
        return dest / manifest.entries[0].path if mv.weights.single_file else dest

    def materialize_data(self, mv: ModelVersion, dest: Path) -> Path:
        manifest = self.manifest(mv.data.digest, "data")
        self._materialize(manifest, dest, f"data of {mv.ref}")
        return dest / manifest.entries[0].path if mv.data.file_count == 1 else dest

    def materialize_code(self, mv: ModelVersion, dest: Path) -> Path:
        """Rebuild the code (archive plus diff) into ``dest`` and check it against the tree manifest."""
        expected = self.manifest(mv.code.tree_digest, "code tree")
        with self._scratch() as scratch:
            tar = scratch / "code.tar"
            self.store.blobs.get_file(mv.code.archive_blob, tar, what=f"code archive of {mv.ref}")
            diff = (
                self.store.blobs.get_bytes(mv.code.diff_blob, what=f"code diff of {mv.ref}")
                if mv.code.diff_blob
                else None
            )
            code_mod.rebuild(tar, diff, dest)
        problems = code_mod.verify_tree(dest, expected, workers=self.settings.hash_workers)
        if problems:
            raise IntegrityError(
                f"rebuilt code of {mv.ref} differs from what was registered: {'; '.join(problems[:5])}",
                expected=mv.code.tree_digest,
                actual="(differs)",
                hint="the archive or diff blob does not rebuild the registered tree",
            )
        return dest / mv.code.subdir if mv.code.subdir else dest

    def _materialize(
        self, manifest: Manifest, dest: Path, what: str, only: Callable[[str], bool] | None = None
    ) -> None:
        with self.progress.task(f"fetching {what}", manifest.total_size) as tick:
            for e in manifest.entries:
                if only is not None and not only(e.path):
                    continue
                self.store.blobs.get_file(e.digest, dest / e.path, what=f"{what}: {e.path}", progress=tick)

    def load(self, ref: str) -> LoadedModel:
        """Load a version for prediction after verifying every digest (and the signature, if any)."""
        mv = self.get(ref)
        fl = get_flavor(mv.flavor)
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"load-{mv.id[:12]}-", dir=self.settings.tmp_dir))
        try:
            weights = self.materialize_weights(mv, workdir / "weights")
            code_dir = self.materialize_code(mv, workdir / "code") if mv.flavor == "python" else None
            predictor = fl.load(weights, code_dir, mv.flavor_config)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        cleanup = weakref.finalize(predictor, shutil.rmtree, workdir, True)
        return LoadedModel(mv.id, predictor, mv.input_schema, on_close=cleanup)

    def reproduce(self, ref: str, dest: str | Path, *, retrain: bool = False) -> Any:
        """Materialise code, data and weights into ``dest`` and verify every digest (see `reproduce`)."""
        from tether.registry.reproduce import reproduce

        return reproduce(self, self.get(ref), Path(dest), retrain=retrain)


def _json_mapping(value: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        canonical_json(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what} must be plain JSON with finite numbers: {e}") from None
    return value


def from_row(cls: type[_T], row: Any) -> _T:
    """A dataclass from a database row whose columns include the dataclass's field names."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def _data_row(dcap: data_mod.DataCapture, now: datetime) -> dict[str, Any]:
    return {
        "digest": dcap.manifest.root_digest,
        "format": dcap.format,
        "schema": dcap.schema,
        "row_count": dcap.row_count,
        "size_bytes": dcap.manifest.total_size,
        "file_count": len(dcap.manifest.entries),
        "created_at": now,
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _files_of(root: Path, manifest: Manifest) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    return [(e.path, root / e.path) for e in manifest.entries]


def _null_counts(dcap: data_mod.DataCapture) -> dict[str, int]:
    """Nulls per column over the whole snapshot, streamed batch by batch."""
    counts: dict[str, int] = {}
    files = [str(p) for _, p in dcap.files]
    for batch in ds.dataset(files, format=dcap.format).to_batches():
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            counts[name] = counts.get(name, 0) + col.null_count
    return counts
