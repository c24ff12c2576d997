"""Who is calling the control plane: API keys (``Authorization: Bearer``) or a dashboard session.

The same keys and roles as the data plane (`tether.serving.auth`): ``read`` needs viewer, deployer or admin;
``deploy`` (rollouts, deployments) deployer or admin; ``govern`` (gate policies, keys) admin. With
authentication off (``tether serve --no-auth``, a laptop) every caller acts as the settings' actor, except
where a change must be held to a person (gate policies, keys): those are refused.

Tenants' data (the ledger, budgets, graded interactions, and the audit trail's prediction, LLM, cache and score
records) is read within the caller's `Caller.scope`: its own tenant, or every tenant for admin keys and keys made
with ``--all-tenants``. A route answers a tenant-bound caller as if other tenants' rows did not exist, and refuses
(403) a filter naming another tenant (`tenant_filter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tether.api.problems import Refused
from tether.api.server import Server
from tether.serving.auth import ALLOWED

bearer = HTTPBearer(auto_error=False, description="An API key from 'tether keys create'")


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    #: ``key`` (a bearer key), ``session`` (the dashboard's signed cookie) or ``open`` (authentication off).
    via: str
    key_id: str | None = None
    #: The one tenant whose data the caller reads, or None: every tenant's.
    scope: str | None = None

    def may(self, action: str) -> bool:
        return self.via == "open" or self.role in ALLOWED[action]

    def reads(self, tenant: str | None) -> bool:
        """Whether the caller may read data of ``tenant``."""
        return self.scope is None or tenant == self.scope


def tenant_filter(caller: Caller, asked: str | None) -> str | None:
    """The tenant a read is narrowed to: the one asked for (None: all) within the caller's scope; asking for
    another tenant than a tenant-bound caller's own is refused, never silently answered empty."""
    if caller.scope is None:
        return asked
    if asked is not None and asked != caller.scope:
        raise Refused(
            403,
            f"key {caller.name!r} reads tenant {caller.scope!r} only, not {asked!r}",
            hint="ask an admin for a key of that tenant, or one made with --all-tenants",
        )
    return caller.scope


def server_of(request: Request) -> Server:
    return cast(Server, request.app.state.server)


#: A route parameter: the `Server` the control plane belongs to.
Srv = Annotated[Server, Depends(server_of)]


def check(server: Server, authorization: str | None, action: str, model: str = "-", *, held: bool = False) -> Caller:
    """The caller for ``authorization``, or `Refused`; refusals are counted per model like the data plane's.
    ``held``: an action that needs a named person, refused with authentication off."""
    keys = server.keys
    if keys is None:
        if held:
            raise Refused(
                403,
                f"'{action}' over HTTP needs API keys on (tether serve without --no-auth)",
                hint="use the CLI on the server, or turn authentication on",
            )
        return Caller(server.settings.actor, "admin", "open")
    result = keys.check(authorization, action)
    if isinstance(result, tuple):
        server.gateway.rejected[(model, f"auth_{result[0]}")] += 1
        raise Refused(result[0], result[1], hint="create a key with 'tether keys create NAME --role ROLE'")
    return Caller(result.name, result.role, "key", result.id, result.scope)


def need(action: str, *, held: bool = False) -> Any:
    """A route dependency: the `Caller`, who may do ``action``."""

    def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Caller:
        model = str(request.path_params.get("name", "-"))
        header = f"Bearer {credentials.credentials}" if credentials is not None else None
        return check(server_of(request), header, action, model, held=held)

    dependency.tether_action = action  # type: ignore[attr-defined]  # what the role matrix test reads
    return Depends(cast(Callable[..., Caller], dependency))
