"""What a tenant-bound reader sees of views that mix tenants: the LLM watch's prompt drift and its anomalies.

Prompt drift is computed over the model's sampled prompts, every tenant's together, and its evidence quotes
prompts (the examples nearest the shift, the topics named by their centre prompt) and names traces. A reader
bound to one tenant (`tether.api.access.Caller.scope`; None reads every tenant) sees the model-wide decision and
statistics without that evidence, and only its own tenant's stream in full; anomalies of another tenant's
stream are not shown (`tether.monitor.watch.Watch.anomalies` with ``scope``).
Everything else the watch reports (decay, canary against champion, rates) is counts and statistics over
graded rows, the platform's view of its model, and is shown to every reader.
"""

from __future__ import annotations

from typing import Any

#: Evidence in a prompt-drift result that quotes or names tenants' traffic.
QUOTING = ("examples", "topics", "traces")


def prompt_drift(pd: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """``pd`` (a prompt-drift result with its per-tenant results) as a reader of ``scope`` may see it."""
    if scope is None or not pd:
        return pd
    out = {k: v for k, v in pd.items() if k not in QUOTING and k != "tenants"}
    for k in QUOTING:
        if k in pd:
            out[k] = []
    own = (pd.get("tenants") or {}).get(scope)
    if own is not None:
        out["tenants"] = {scope: own}
    return out


def status(doc: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """An LLM watch status (``LLMStatus.to_json``) for a reader of ``scope``."""
    if scope is None or "prompt_drift" not in doc:
        return doc
    return {**doc, "prompt_drift": prompt_drift(doc["prompt_drift"], scope)}


def budgets(by_scope: dict[str, Any], scope: str | None, key_tenants: dict[str, str]) -> dict[str, Any]:
    """Budgets (``tenant:NAME`` or ``key:KEY_ID`` -> usage) a reader of ``scope`` may see: its tenant's and its
    tenant's keys'."""
    if scope is None:
        return by_scope
    return {s: v for s, v in by_scope.items() if s == f"tenant:{scope}" or key_tenants.get(s[4:]) == scope}
