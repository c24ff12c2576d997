"""Replay a logged prediction: load that exact version (verified), rerun the logged input, compare digests."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

from tether.audit.log import AuditLog, digest_of
from tether.audit.logset import AuditSet
from tether.core import InvalidInputError
from tether.registry import Registry


def replay(registry: Registry, audit: AuditLog | AuditSet, trace_id: str) -> dict[str, Any]:
    found = audit.trace(trace_id)
    rec = found["record"]
    if rec["kind"] not in ("prediction", "llm"):
        raise InvalidInputError(f"trace {trace_id} is a {rec['kind']} record; only predictions and LLM calls replay")
    payload = orjson.loads(rec["payload"])
    if not payload or "input" not in payload:
        raise InvalidInputError(
            f"trace {trace_id} was logged without its input (payload policy hashed or redact)",
            hint="replay needs TETHER_AUDIT_PAYLOAD=full for the records to replay",
        )
    inputs = payload["input"]
    if digest_of(inputs, audit.secret) != rec["input_digest"] and digest_of(inputs) != rec["input_digest"]:
        raise InvalidInputError(f"the logged input of {trace_id} does not match its digest (redacted fields?)")
    mv = registry.get(rec["version_id"])
    triad = (mv.code.digest, mv.data.digest, mv.weights.digest)
    logged = (rec["code_digest"], rec["data_digest"], rec["weights_digest"])
    model = registry.load(mv.id)  # digests and signature verified before a byte is deserialised
    try:
        if rec["kind"] == "llm":
            # The conversation the model saw (after the template and trimming), with the logged decoding; a cache
            # hit replays as the model's own answer, so a semantic hit may differ from what was served.
            chat = getattr(model.native, "chat", None)
            if chat is None:
                raise InvalidInputError(f"version {mv.ref} cannot rerun a conversation (its flavor has no chat)")
            outputs: Any = chat(inputs["sent"], inputs.get("tools"), inputs.get("response_format"), inputs["decoding"])
        else:
            out = model.predict(pd.DataFrame.from_records(inputs))
            # Exactly as an instance answers (tether.serving.worker), then as the gateway digests it.
            outputs = orjson.loads(out.to_json(orient="records"))
    finally:
        model.close()
    # Keyed with the store's audit secret (records written before it existed used plain SHA-256).
    keyed = digest_of(inputs, audit.secret) == rec["input_digest"]
    digest = digest_of(outputs, audit.secret if keyed else None)
    return {
        "trace_id": trace_id,
        "version": mv.ref,
        "triad_matches": triad == logged,
        "logged_output_digest": rec["output_digest"],
        "replayed_output_digest": digest,
        "matches": digest == rec["output_digest"],
        "outputs": outputs,
        "inclusion_proof_verifies": found["proof_verifies"],
    }
