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


class _LocalPredictor:
    def __init__(self, weights: Path, spec: LLMSpec) -> None:
        from tether.llm.engine import Engine

        self.spec = spec
        self.engine = Engine(weights, block_tokens=spec.context.block_tokens, kv_cache_bytes=32 << 20)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        d = self.spec.decoding
        texts, finishes = [], []
        for prompt in frame["prompt"]:
            msgs = messages_for(self.spec, [{"role": "user", "content": str(prompt)}])
            ids = self.engine.encode(self.engine.render(msgs, self.spec.prompt.tools or None))
            gen = self.engine.complete(
                ids, max_tokens=d.max_tokens, temperature=d.temperature, top_p=d.top_p, seed=d.seed, stop=d.stop
            )
            texts.append(gen.text)
            finishes.append(gen.finish_reason)
        return pd.DataFrame({"text": texts, "finish_reason": finishes})


class _RemotePredictor:
    def __init__(self, spec: LLMSpec) -> None:
        self.spec = spec

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        b, d = self.spec.backend, self.spec.decoding
        texts, finishes = [], []
        for prompt in frame["prompt"]:
            body: dict[str, Any] = {
                "model": b.model,
                "messages": messages_for(self.spec, [{"role": "user", "content": str(prompt)}]),
                "max_tokens": d.max_tokens,
                "temperature": d.temperature,
                "top_p": d.top_p,
            }
            if d.seed is not None:
                body["seed"] = d.seed
            if d.stop:
                body["stop"] = d.stop
            headers = {"Content-Type": "application/json"}
            if b.api_key_env and os.environ.get(b.api_key_env):
                headers["Authorization"] = f"Bearer {os.environ[b.api_key_env]}"
            url = b.endpoints[0].rstrip("/") + "/chat/completions"
            req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)  # noqa: S310 (http(s) only: the spec checks)
            try:
                with urllib.request.urlopen(req, timeout=b.timeout_s) as resp:  # noqa: S310
                    answer = json.loads(resp.read())
            except OSError as e:
                raise ExternalCommandError(f"the LLM endpoint {url} did not answer: {e}") from None
            choice = answer["choices"][0]
            texts.append(choice["message"].get("content") or "")
            finishes.append(choice.get("finish_reason") or "stop")
        return pd.DataFrame({"text": texts, "finish_reason": finishes})


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
