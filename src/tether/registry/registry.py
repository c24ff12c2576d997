"""`Registry`: register, find, alias, load and reproduce model versions.

This is the one entry point the CLI, the API and user code share. Registration validates and hashes
everything first (git state, data readability, weights manifest, flavor load and a smoke prediction), so bad
input is refused before a single byte is stored; then blobs are written (atomically, content-addressed) and
the rows are inserted in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tether.core.clock import Clock, SystemClock
from tether.core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from tether.core.hashing import Manifest, canonical_json, hash_tree
from tether.core.progress import NoProgress, ProgressReporter
from tether.core.settings import Settings
from tether.core.signing import SigningKey
from tether.core.types import VersionId, short
from tether.registry import aliases as alias_ops
from tether.registry import code as code_mod
from tether.registry import data as data_mod
from tether.registry import policy as policy_ops
from tether.registry import schema as schema_mod
from tether.registry.data import DataSnapshot
from tether.registry.files import VersionFiles
from tether.registry.flavors import LoadedModel, get_flavor
from tether.registry.lookup import from_row
from tether.registry.version import ModelVersion, check_name, version_id
from tether.store import Store
from tether.store.tables import code_refs, data_snapshots, model_versions, weights_artifacts

SMOKE_ROWS = 64


class Registry(VersionFiles):
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

            # Everything is valid: store blobs (atomic, idempotent), then rows in one transaction. The same code
            # registered again (another model of the same repository, a retrain) has its archive stored already.
            archive_blob = self._stored_archive(code_digest)
            if archive_blob is None:
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

    def _stored_archive(self, code_digest: str) -> str | None:
        """The archive blob of an already registered code record, if it is still in the blob store."""
        with self.store.db.connect() as conn:
            row = conn.execute(select(code_refs.c.archive_blob).where(code_refs.c.digest == code_digest)).first()
        if row is None or not self.store.blobs.exists(row[0]):
            return None
        return str(row[0])

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
