"""Which version serves each model: the routing tables as the database wants them, and as they are in effect.

The controller, the CLI and the API write the *desired* tables (`tether.serving.table`); a gateway routes by the
*effective* ones, which follow the desired ones as soon as what they name can answer (`apply`): a new champion
(a deploy, an alias move, a promotion) takes the traffic once it is ready, loaded in the pool or its instance up,
and until then the champion serving now goes on serving, so no change of routing answers a request "not ready"
(ModelMesh moves an alias only once its new target is loaded, likewise). A canary gets its share once its own
instance is up (the gateway's `predict` sends the share to the champion meanwhile).
"""

from __future__ import annotations

from tether.serving.routing import RoutingTable
from tether.serving.runtime import Runtime


class Switchboard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        #: What serves each model now.
        self.tables: dict[str, RoutingTable] = {}
        #: What the database says should serve each model.
        self.desired: dict[str, RoutingTable] = {}
        self.revisions: dict[str, int] = {}
        #: Models whose desired champion is not ready yet (the old one serves meanwhile): model -> that champion.
        self.holding: dict[str, str] = {}

    def set_desired(self, changed: dict[str, RoutingTable], gone: set[str], revisions: dict[str, int]) -> set[str]:
        """Take the routing tables that changed (and the models no table names any more), then `apply`; returns
        the models whose effective table changed."""
        for m, t in changed.items():
            self.desired[m] = t
        for m in gone:
            self.desired.pop(m, None)
            self.revisions.pop(m, None)
        self.revisions.update(revisions)
        return self.apply({*changed, *gone})

    def apply(self, models: set[str] | None = None) -> set[str]:
        """Move each of ``models`` (default: those waiting for a version to be ready) to its desired table where
        what it names can answer; returns the models whose effective table changed."""
        moved: set[str] = set()
        for m in models if models is not None else set(self.holding):
            desired = self.desired.get(m)
            if desired is None:
                self.holding.pop(m, None)
                if self.tables.pop(m, None) is not None:
                    moved.add(m)
                continue
            table = self._effective(desired, self.tables.get(m))
            if table.champion != desired.champion:
                self.holding[m] = desired.champion
            else:
                self.holding.pop(m, None)
            if self.tables.get(m) != table:
                self.tables[m] = table
                moved.add(m)
        return moved

    def _effective(self, desired: RoutingTable, current: RoutingTable | None) -> RoutingTable:
        """The desired table, except that a new champion that is not ready yet waits while the one serving now
        can still answer (it then serves everything the new one would have)."""
        if current is None or current.champion == desired.champion or self.runtime.ready(desired.champion):
            return desired
        if self.runtime.instance(current.champion) is None:
            return desired  # the old champion cannot answer either: nothing to hold on to
        return RoutingTable(
            desired.model,
            current.champion,
            desired.canary,
            desired.canary_bp,
            desired.shadow,
            desired.shadow_bp,
            desired.salt,
            desired.mirror_bp,
        )

    def serving_versions(self) -> set[str]:
        """Every version a desired or effective table names (none of them may stop)."""
        return {
            v
            for tables in (self.desired, self.tables)
            for t in tables.values()
            for v in (t.champion, t.canary, t.shadow)
            if v
        }

    def readiness(self) -> tuple[list[str], dict[str, str]]:
        """(what the gateway still waits for before it is ready, the models that cannot be served and why).

        Health is per model: a champion whose instance is still starting keeps the gateway "starting"; one whose
        start failed (it is retried with backoff) is listed as unready, and the others serve."""
        waiting: list[str] = []
        unready: dict[str, str] = {}
        failure = getattr(self.runtime, "failure", None)
        for m, t in self.tables.items():
            why = failure(t.champion) if failure is not None else None
            if why:
                unready[m] = why
            elif self.runtime.instance(t.champion) is None:
                waiting.append(m)
        for m, vid in self.holding.items():
            unready.setdefault(m, f"the new champion {vid[:12]}… is not ready yet; the previous one serves")
        return sorted(waiting), unready
