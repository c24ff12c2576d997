"""One leader at a time: a lease row in the metadata database, with a fencing epoch.

The rollout controller, the drift watch and the LLM evaluation loop must run in exactly one process however
many ``tether serve`` processes share a database. Each candidate calls `Lease.hold` every ``ttl / 3`` seconds:
it takes the lease when it is free or expired, renews it when it holds it, and otherwise stands by. Taking
the lease bumps its ``epoch``; every automatic decision is written in a transaction that first calls
`Lease.fence`, which succeeds only if this holder still has the lease, at the epoch it took, unexpired. A
deposed leader (paused by the OS, cut off from the database, its lease taken) therefore cannot write a
decision: its transaction fails and rolls back. On PostgreSQL the fence's UPDATE and a takeover's UPDATE lock
the same row, so they are ordered; on SQLite every write transaction is serialised anyway.

Times are the database server's clock, never a replica's: a replica whose clock runs ahead cannot expire the
leader's lease early. A standby takes over within ``ttl`` plus one renewal interval of the leader's death.

Why a lease row and not only ``pg_try_advisory_lock``: it works on SQLite too (the embedded default, and
several processes on one machine), and its epoch is the fencing token that an advisory lock does not give.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.errors import ConflictError
from tether.store.database import Database, db_now
from tether.store.tables import leases

log = logging.getLogger("tether.leader")

CONTROLLER = "controller"


class DeposedError(ConflictError):
    """This process no longer holds the lease: the decision it was about to write is dropped."""


def holder_name(replica: str | None = None) -> str:
    """A name no other process (nor this one after a restart) will use: host, pid and a random part."""
    return f"{replica or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """``hold()`` to take or renew; ``leader`` says whether this process may decide; ``fence(conn)`` proves it."""

    def __init__(self, db: Database, *, name: str = CONTROLLER, holder: str | None = None, ttl: float = 6.0) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be positive")
        self.db, self.name, self.ttl = db, name, ttl
        self.holder = holder or holder_name()
        self.epoch: int | None = None
        #: Monotonic time until which this process may act without renewing (a safety margin under the ttl).
        self._valid_until = 0.0
        self._lock = threading.Lock()
        self.takeovers = 0

    @property
    def leader(self) -> bool:
        return self.epoch is not None and time.monotonic() < self._valid_until

    def hold(self) -> bool:
        """Take the lease if it is free or expired, renew it if held; True when this process leads."""
        now = db_now(self.db.dialect)
        started = time.monotonic()
        with self._lock:
            try:
                with self.db.begin() as conn:
                    row = conn.execute(select(leases).where(leases.c.name == self.name)).mappings().first()
                    if row is None:
                        conn.execute(
                            insert(leases).values(name=self.name, holder=self.holder, epoch=1, expires=now + self.ttl)
                        )
                        epoch = 1
                    else:
                        mine = row["holder"] == self.holder and row["epoch"] == self.epoch
                        epoch = int(row["epoch"]) if mine else int(row["epoch"]) + 1
                        # Compare-and-set on the epoch read: of two standbys racing for an expired lease, one wins.
                        cond = leases.c.holder == self.holder if mine else leases.c.expires < now
                        done = conn.execute(
                            update(leases)
                            .where(leases.c.name == self.name, leases.c.epoch == row["epoch"], cond)
                            .values(holder=self.holder, epoch=epoch, expires=now + self.ttl)
                        )
                        if done.rowcount != 1:
                            self._lost(f"held by {row['holder']} (epoch {row['epoch']})")
                            return False
            except IntegrityError:  # another process inserted the first row at the same moment
                self._lost("taken at the same moment by another process")
                return False
            if self.epoch != epoch:
                self.takeovers += 1
                log.warning("%s leads %r from epoch %d", self.holder, self.name, epoch)
            self.epoch = epoch
            # Renewal took effect no later than `started`; act only well inside the ttl from then.
            self._valid_until = started + self.ttl * 0.8
            return True

    def _lost(self, why: str) -> None:
        if self.epoch is not None:
            log.warning("%s no longer leads %r: %s", self.holder, self.name, why)
        self.epoch = None

    def fence(self, conn: Connection) -> None:
        """Raise `DeposedError` unless this process still holds the lease at its epoch (in ``conn``'s transaction)."""
        epoch = self.epoch
        if epoch is None:
            raise DeposedError(f"{self.holder} does not lead {self.name!r}", hint="only the leader decides")
        done = conn.execute(
            update(leases)
            .where(
                leases.c.name == self.name,
                leases.c.holder == self.holder,
                leases.c.epoch == epoch,
                leases.c.expires >= db_now(self.db.dialect),
            )
            .values(epoch=leases.c.epoch)
        )
        if done.rowcount != 1:
            self.epoch = None
            raise DeposedError(
                f"{self.holder} lost the lease {self.name!r} (epoch {epoch}); the decision was not written",
                hint="the new leader re-evaluates from the stored state",
            )

    def release(self) -> None:
        """Give the lease up at once (a clean shutdown), so a standby need not wait for it to expire."""
        with self._lock:
            if self.epoch is None:
                return
            try:
                with self.db.begin() as conn:
                    conn.execute(
                        update(leases)
                        .where(leases.c.name == self.name, leases.c.holder == self.holder)
                        .values(expires=0.0)
                    )
            except Exception:  # the database is gone: the lease expires by itself
                log.warning("could not release the lease %r", self.name, exc_info=True)
            self.epoch = None

    def current(self) -> dict[str, Any] | None:
        """Who holds the lease, at which epoch, and how many seconds it has left (database time)."""
        with self.db.connect() as conn:
            row = conn.execute(
                select(
                    leases.c.holder, leases.c.epoch, (leases.c.expires - db_now(self.db.dialect)).label("left")
                ).where(leases.c.name == self.name)
            ).first()
        if row is None:
            return None
        return {"holder": row.holder, "epoch": int(row.epoch), "seconds_left": float(row.left)}
