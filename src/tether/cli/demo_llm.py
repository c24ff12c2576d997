"""`tether demo`, the LLM chapter: a tiny GPT-2 registered as a triad, served through the OpenAI-compatible
gateway (caches, trimming, budgets, the ledger) and driven by the ``openai`` client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from tether.cli.output import console
from tether.core import Settings
from tether.registry import Registry

GIT_ENV = {
    "GIT_AUTHOR_NAME": "tether demo",
    "GIT_AUTHOR_EMAIL": "demo@tether.invalid",
    "GIT_COMMITTER_NAME": "tether demo",
    "GIT_COMMITTER_EMAIL": "demo@tether.invalid",
}


LLM_SPEC = {
    "backend": {"kind": "local"},
    "prompt": {"version": "support-1", "system": "You are the support assistant."},
    "decoding": {"temperature": 0, "max_tokens": 24},
    "context": {"max_input_tokens": 160, "keep_last_turns": 2, "block_tokens": 8},
    "prices": {"currency": "USD", "input_per_1k": 0.5, "cached_input_per_1k": 0.25, "output_per_1k": 1.5},
}


def llm_chapter(reg: Registry, settings: Settings, root: Path) -> None:
    try:
        import openai  # noqa: F401  (the client a user would use; installed with the dev extra)

        from tether.llm.tiny import build_tiny_gpt2
    except ImportError as e:
        console.print(f"  skipped: the llm extra is not installed ({e}); pip install 'tether[llm]' openai")
        return
    import asyncio
    import logging

    from tether.llm.flavor import PROMPT_SCHEMA
    from tether.llm.ledger import Limits, write_limits
    from tether.rollout.controller import Controller
    from tether.serving.auth import create_key
    from tether.serving.window import MetricStore

    logging.getLogger("tether.llm").setLevel(logging.ERROR)
    # Quiet Hugging Face's progress bars and advice, here and in the instance process that inherits this env.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    project = root / "assistant"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir()
    build_tiny_gpt2(project / "model")  # trained here, offline, in seconds
    (project / "llm.yaml").write_text(json.dumps(LLM_SPEC, indent=2))
    (project / ".gitignore").write_text("model/\n")
    prompts = pd.DataFrame({"prompt": ["How do I reset my password?", "How do I cancel the refund?"]})
    prompts.to_parquet(project / "prompts.parquet", index=False)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "support assistant"]):
        subprocess.run(["git", *args], cwd=project, check=True, env={**os.environ, **GIT_ENV}, capture_output=True)
    mv = reg.register(
        "helpdesk",
        code=project,
        data=project / "prompts.parquet",
        weights=project / "model",
        flavor="llm",
        flavor_options={"spec": LLM_SPEC},
        input_schema=PROMPT_SCHEMA,
    )
    console.print(
        f"  $ tether llm register helpdesk --spec llm.yaml --weights model --data prompts.parquet -> {mv.ref} "
        f"(a 4-layer GPT-2, system prompt version support-1, temperature 0: prompt, decoding and weights in the id)"
    )
    Controller(reg, MetricStore()).deploy("helpdesk", mv.ref, reason="first LLM deployment", force=True)
    _, secret = create_key(reg.store.db, "team-a", "client", reg.clock.now())
    write_limits(reg.store.db, "tenant:team-a", Limits(tokens_per_day=700), reg.clock.now(), "demo")
    console.print("  deployed; API key for tenant team-a with a budget of 700 tokens a day")
    asyncio.run(llm_traffic(settings, secret))
    from tether.llm.ledger import summary

    console.print("  $ tether llm ledger")
    for r in summary(reg.store.db, since=reg.clock.now().replace(hour=0, minute=0, second=0)):
        console.print(
            f"    {r['tenant']:8} {r['model_name']:9} cache={r['cache']:8} {r['requests']:3} requests  "
            f"{r['input_tokens']:5} in {r['output_tokens']:4} out  cost {r['cost']:.4f} USD  "
            f"saved {r['saved_tokens']} tokens ({r['saved_cost']:.4f} USD)  trimmed {r['trimmed_tokens']}"
        )


async def llm_traffic(settings: Settings, secret: str) -> None:
    import asyncio

    import openai

    from tether.api.server import Server

    server = Server(settings, port=0, tick_seconds=1.0)
    await server.start()
    try:
        await server.wait_ready()
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0)
        console.print(f"  client: openai.OpenAI(base_url='{server.url}/v1', api_key=...)")

        async def ask(text: str) -> None:
            r = await client.chat.completions.create(model="helpdesk", messages=[{"role": "user", "content": text}])
            meta = r.model_extra["tether"] if r.model_extra else {}
            how = meta.get("cache")
            sim = f" (similarity {meta['similarity']:.3f})" if meta.get("similarity") else ""
            led = meta.get("ledger", {})
            spent = (
                f"{r.usage.prompt_tokens} in + {r.usage.completion_tokens} out, {led.get('cost', 0):.4f} USD"
                if how == "none"
                else f"0 tokens, saved {led.get('saved_tokens')}"
            )
            console.print(f"  > {text!r}\n    {r.choices[0].message.content!r}  ({how} cache{sim}; {spent})")

        await ask("How do I reset my password?")
        await ask("How do I reset my password?")
        await ask("What is the way to reset my password?")
        await ask("Can't I reset my password?")  # a negation: the meaning guard refuses the near neighbour
        stream = await client.chat.completions.create(
            model="helpdesk",
            messages=[{"role": "user", "content": "How do I download the invoice?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        console.print(f"  > streamed in {len(pieces)} chunks: {''.join(pieces)!r}")
        turns: list[dict[str, str]] = []
        for i, topic in enumerate(["the weather", "my invoice total", "a joke", "the refund for my invoice"]):
            turns += [
                {"role": "user", "content": f"Question {i} about {topic}, with some detail to make it long."},
                {"role": "assistant", "content": f"An answer about {topic} " * 4},
            ]
        turns.append({"role": "user", "content": "Why is my invoice charged twice?"})
        r = await client.chat.completions.create(model="helpdesk", messages=turns)
        ctx = (r.model_extra or {})["tether"]["context"]
        console.print(
            f"  > a {len(turns)}-message conversation over the version's 160-token budget: trimmed from "
            f"{ctx['tokens_before']} to {ctx['tokens_after']} tokens, dropped messages {ctx['dropped_messages']} "
            f"(least relevant to the last question); system prompt pinned ({ctx['pinned_tokens']} tokens)"
        )

        async def burst(i: int) -> str:
            try:
                await client.chat.completions.create(
                    model="helpdesk", messages=[{"role": "user", "content": f"How do I renew order {i}?"}]
                )
                return "ok"
            except openai.RateLimitError as e:
                return str(e.message)

        results = await asyncio.gather(*(burst(i) for i in range(10)))
        refused = [m for m in results if m != "ok"]
        console.print(f"  > 10 questions at once: {results.count('ok')} answered, {len(refused)} refused with 429")
        if refused:
            console.print(f"    {refused[0]}")
    finally:
        await server.stop()
