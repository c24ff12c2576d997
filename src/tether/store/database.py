"""The metadata database: SQLite under the store root by default, PostgreSQL when a URL says so.

Migrations (Alembic, shipped in this package) run automatically the first time a `Database` is opened,
under a lock so that concurrent processes do not race: an advisory lock on PostgreSQL, a file lock beside
the SQLite file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from tether.core.errors import InvalidInputError, MissingExtraError, TetherError

MIGRATIONS = Path(__file__).with_name("migrations")
#: Any 64-bit constant; identifies tether's migration lock among other advisory locks.
_PG_MIGRATION_LOCK = 0x7E7E_0001


class DatabaseUnavailableError(TetherError):
    http_status = 503


def normalise_url(url: str) -> str:
    """Pick the driver tether supports for each backend (psycopg 3 for PostgreSQL)."""
    try:
        parsed = make_url(url)
    except Exception:
        raise InvalidInputError(
            f"not a database URL: {url!r}",
            hint="use sqlite:////abs/path.db or postgresql://user@host:5432/dbname",
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingExtraError("PostgreSQL storage", "psycopg", "postgres") from None
    elif backend != "sqlite":
        raise InvalidInputError(
            f"unsupported database {backend!r} in {url!r}", hint="tether supports sqlite and postgresql URLs"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Database:
    """An engine plus the guarantee that the schema is at the newest migration."""

    #: Serialises migrations between threads of one process (other processes: the locks below).
    _migrate_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, *, engine_options: dict[str, Any] | None = None) -> None:
        self.url = normalise_url(url)
        options = dict(engine_options or {})
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options.setdefault("pool_pre_ping", True)
        # Strict JSON on every backend: SQLite would store NaN/Infinity that PostgreSQL rejects and that no
        # auditor's JSON parser reads. A non-finite number reaching the database is a bug to surface at once.
        options.setdefault("json_serializer", functools.partial(json.dumps, allow_nan=False))
        self.engine: Engine = create_engine(self.url, **options)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest migration; costs one query when it already is (and imports Alembic
        only when it is not: a model worker opening the store at head never loads it, nor Mako and Pygments
        behind it)."""
        with self._connect() as conn:
            if _revision(conn) == self.head_revision():
                return
        from alembic import command
        from alembic.config import Config

        with Database._migrate_lock, self._process_lock(), self._connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            if _revision(conn) != self.head_revision():
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            conn.commit()

    @staticmethod
    @functools.cache
    def head_revision() -> str:
        """The newest migration's revision: migrations are numbered files (``0012_score_sums.py`` is revision
        ``0012``) in one line, so the head is the largest number (a test checks it against Alembic's own)."""
        return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _revision(conn)

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        parsed = make_url(self.url)
        if self.dialect != "sqlite" or not parsed.database or parsed.database == ":memory:":
            yield
            return
        lock_path = Path(parsed.database + ".migrate.lock")
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except OperationalError as e:
            raise DatabaseUnavailableError(
                f"cannot connect to the database {make_url(self.url).render_as_string(hide_password=True)}: "
                f"{str(e.orig).strip().splitlines()[0] if e.orig else e}",
                hint="check TETHER_DATABASE_URL and that the server is running",
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed on success, rolled back on any error."""
        with self._connect() as conn, conn.begin():
            yield conn

    def connect(self) -> contextlib.AbstractContextManager[Connection]:
        return self._connect()

    def dispose(self) -> None:
        self.engine.dispose()


def _revision(conn: Connection) -> str | None:
    """The schema's revision as Alembic records it (None for an empty database)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def is_immutability_violation(exc: BaseException) -> bool:
    """True when a database error came from tether's immutability triggers."""
    return isinstance(exc, DBAPIError) and "rows are immutable" in str(exc)


def db_now(dialect: str) -> Any:
    """The database server's time in seconds since the epoch, as a SQL expression: what leases and published
    metrics are stamped with, so that a replica whose own clock is off cannot expire or reorder them."""
    from sqlalchemy import literal_column

    if dialect == "postgresql":
        return literal_column("extract(epoch from clock_timestamp())")
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)")
