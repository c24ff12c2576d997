"""The ``llm`` model flavor: an LLM version in the registry, locked like every other version.

Its weights are a Hugging Face model folder (``backend.kind: local``, served by the embedded engine) or, for a
remote OpenAI-compatible endpoint, the spec file itself (the endpoint and model name are then the identity).
Its flavor config is ``{"spec": <the validated LLMSpec>}``: prompt template version, tools, response schema,
decoding parameters, cache, context and price settings are all inside the version id.

``predict(frame)`` answers a ``prompt`` column (one user message each, under the version's system prompt and
decoding parameters) with a ``text`` column: what the gate, ``tether predict`` and audit replay use. Greedy
decoding on the embedded engine is deterministic, so a replay reproduces the logged output digest.

Registered through the ``tether.flavors`` entry point, so the registry finds it without importing this layer.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from tether.core.errors import ExternalCommandError, InvalidInputError
from tether.llm.spec import LLMSpec

PROMPT_SCHEMA = {"fields": [{"name": "prompt", "type": "string", "required": True}]}


def messages_for(spec: LLMSpec, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The version's pinned system prompt first, then the conversation."""
    if spec.prompt.system is None:
        return list(messages)
    return [{"role": "system", "content": spec.prompt.system}, *messages]


class _Predictor:
    """``predict(frame)`` for the gate and ``tether predict``: each ``prompt`` as one user message under the
    version's template and decoding, through the backend's ``chat``."""

    spec: LLMSpec

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        decoding: dict[str, Any],
    ) -> dict[str, Any]:
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        p, d = self.spec.prompt, self.spec.decoding
        decoding = {
            "max_tokens": d.max_tokens,
            "temperature": d.temperature,
            "top_p": d.top_p,
            "seed": d.seed,
            "stop": d.stop,
        }
        out = [
            self.chat(
                messages_for(self.spec, [{"role": "user", "content": str(q)}]),
                p.tools or None,
                p.response_format,
                decoding,
            )
            for q in frame["prompt"]
        ]
        return pd.DataFrame({"text": [o["text"] for o in out], "finish_reason": [o["finish_reason"] for o in out]})


class _LocalPredictor(_Predictor):
    def __init__(self, weights: Path, spec: LLMSpec) -> None:
        from tether.llm.engine import Engine

        self.spec = spec
        self.engine = Engine(weights, block_tokens=spec.context.block_tokens, kv_cache_bytes=32 << 20)

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        decoding: dict[str, Any],
    ) -> dict[str, Any]:
        """One completion of a whole conversation, as the engine's worker answers it (audit replay)."""
        ids = self.engine.encode(self.engine.render(messages, tools))
        gen = self.engine.complete(
            ids,
            max_tokens=decoding.get("max_tokens") or self.spec.decoding.max_tokens,
            temperature=decoding.get("temperature") or 0.0,
            top_p=decoding.get("top_p") or 1.0,
            seed=decoding.get("seed"),
            stop=decoding.get("stop") or [],
        )
        return {"text": gen.text, "tool_calls": None, "finish_reason": gen.finish_reason}


class _RemotePredictor(_Predictor):
    def __init__(self, spec: LLMSpec) -> None:
        self.spec = spec

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        decoding: dict[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.spec.backend.model, "messages": messages, "stream": False}
        body.update({k: v for k, v in decoding.items() if v not in (None, [])})
        if tools:
            body["tools"] = tools
        if response_format:
            body["response_format"] = response_format
        choice = self._post(body)["choices"][0]
        msg = choice.get("message") or {}
        return {
            "text": msg.get("content") or "",
            "tool_calls": msg.get("tool_calls"),
            "finish_reason": choice.get("finish_reason") or "stop",
        }

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        b = self.spec.backend
        headers = {"Content-Type": "application/json"}
        if b.api_key_env and os.environ.get(b.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[b.api_key_env]}"
        url = b.endpoints[0].rstrip("/") + "/chat/completions"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)  # noqa: S310 (http(s) only: the spec checks)
        try:
            with urllib.request.urlopen(req, timeout=b.timeout_s) as resp:  # noqa: S310
                answer: dict[str, Any] = json.loads(resp.read())
        except OSError as e:
            raise ExternalCommandError(f"the LLM endpoint {url} did not answer: {e}") from None
        return answer


class LLMFlavor:
    name = "llm"
    extra = "llm"
    smoke_rows = 2  # each smoke row is a generation

    def configure(self, weights: Path, code: Path | None, options: dict[str, Any]) -> dict[str, Any]:
        if "spec" not in options:
            raise InvalidInputError("an llm version needs its spec", hint="pass --spec llm.yaml (docs/llm.md)")
        spec = LLMSpec.parse(options["spec"])
        if spec.backend.kind == "local" and not (weights.is_dir() and (weights / "config.json").is_file()):
            raise InvalidInputError(
                f"a local LLM backend needs a Hugging Face model folder as weights; {weights} is not one",
                hint="pass --weights with the folder save_pretrained() wrote, or use backend.kind: openai",
            )
        return {"spec": spec.to_json()}

    def load(self, weights: Path, code: Path | None, config: dict[str, Any]) -> Any:
        spec = LLMSpec.parse(config["spec"])
        if spec.backend.kind == "local":
            return _LocalPredictor(weights, spec)
        return _RemotePredictor(spec)


FLAVOR = LLMFlavor()
