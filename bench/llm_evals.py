"""The LLM evaluation loop's costs and statistics, measured side by side in one run.

    make bench-evals        # creates bench/.venv-drift (Evidently) when missing, then runs this
    python bench/llm_evals.py [--quick] [--others-python bench/.venv-drift/bin/python]

Printed:

  1. grading throughput of the embedded grader (relevance, grounding, non-repetition) on one core, in
     interactions per second, batched as the grading loop batches (32), beside the deterministic checks;
  2. the deterministic checks on the request path: a real `tether serve` in front of a scripted
     OpenAI-compatible backend, two deployed LLMs identical but for ``llm.enabled`` (checks on / off), requests
     alternating between them at 1 connection: p50 and p99 of each, and the ratio;
  3. prompt drift beside Evidently's embedding drift (its default method, a classifier on the embeddings) on the
     same MiniLM embeddings of seeded prompt streams: false-alarm rate on stable streams, power and the
     smallest window that detects a topic shift, seconds per check. tether runs at the level its default
     30-day budget gives one check (1 false alarm per 30 days, a check every 5 minutes: alpha 1.2e-4);
  4. the sequential guard on a canary that breaks JSON in 5% of its answers: canary requests until the rollback
     (seeded simulation of the rollout's schema-violation guard with the default plan);
  5. prediction-powered inference: coverage and width against the judge alone (seeded simulation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))


def throughput(n: int) -> None:
    import torch

    from tether.graders.checks import Checks
    from tether.graders.embed import Embedder
    from tether.graders.embedded import Embedded
    from tether.graders.interaction import Interaction
    from tether.llm.scenarios import prompts

    torch.set_num_threads(1)
    qs = prompts(7, n)
    items = [
        Interaction(
            f"t{i}",
            ({"role": "user", "content": q},),
            f"Here is what to do about it: {q.lower()} Step {i}.",
            context="Refunds take 5 days. Orders ship from Lyon. Passwords are reset in Settings.",
        )
        for i, q in enumerate(qs)
    ]
    grader = Embedded("g", {}, Embedder(memo=0))  # no memo: every text embedded, as fresh traffic is
    grader.grade(items[:32])  # warm-up
    started = time.perf_counter()
    for i in range(0, n, 32):
        grader.grade(items[i : i + 32])
    seconds = time.perf_counter() - started
    checks = Checks("c", {})
    started = time.perf_counter()
    for it in items:
        checks.one(it)
    per_check = (time.perf_counter() - started) / n
    print("1. grading throughput, one core")
    print(f"   embedded grader (3 metrics, batches of 32): {n / seconds:8.1f} interactions/s ({n} interactions)")
    print(
        f"   deterministic checks (6 checks):            {1 / per_check:8.0f} interactions/s "
        f"({per_check * 1e6:.1f} us each)"
    )


async def _hop(requests: int) -> tuple[list[float], list[float]]:
    import aiohttp
    from tests.openai_stub import scripted_openai

    from tether.api.server import Server
    from tether.core import Settings
    from tether.monitor.config import MonitorConfig
    from tether.monitor.watch import Watch
    from tether.registry import Registry
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "r",
            "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        },
    }
    with tempfile.TemporaryDirectory() as tmp, scripted_openai() as backend:
        backend.script = lambda body, n: json.dumps({"answer": "Your ticket is open."})
        root = Path(tmp)
        settings = Settings(home=root / "home")
        code = root / "code"
        code.mkdir()
        (code / "prompts.md").write_text("bench\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "x"]):
            subprocess.run(
                ["git", *args],
                cwd=code,
                check=True,
                capture_output=True,
                env={
                    **os.environ,
                    "GIT_AUTHOR_NAME": "b",
                    "GIT_AUTHOR_EMAIL": "b@x",
                    "GIT_COMMITTER_NAME": "b",
                    "GIT_COMMITTER_EMAIL": "b@x",
                },
            )
        from tether.llm.flavor import PROMPT_SCHEMA

        with Registry.open(settings) as reg:
            for name, enabled in (("on", True), ("off", False)):
                spec = {
                    "backend": {"kind": "openai", "endpoints": [backend.url], "model": name},
                    "prompt": {"response_format": schema},
                    "cache": {"exact": False, "semantic": False},
                    "guardrails": {"rules": [{"name": "no-email", "pattern": r"[\w.]+@[\w.]+"}]},
                }
                f = root / f"{name}.yaml"
                f.write_text(json.dumps(spec))
                mv = reg.register(
                    name,
                    code=code,
                    data=pd.DataFrame({"prompt": ["a", "b"]}),
                    weights=f,
                    flavor="llm",
                    flavor_options={"spec": spec},
                    input_schema=PROMPT_SCHEMA,
                )
                Controller(reg, MetricStore()).deploy(name, mv.ref, reason="bench", force=True)
                Watch(reg).set_config(
                    name,
                    MonitorConfig.model_validate(
                        {"enabled": False, "llm": {"enabled": enabled, "sampling": {"rate": 0.01}}}
                    ),
                )
        server = Server(settings, port=0, tick_seconds=0.5, auth=False)
        await server.start()
        times: dict[str, list[float]] = {"on": [], "off": []}
        try:
            await server.wait_ready()
            deadline = time.monotonic() + 30
            while not {"on", "off"} <= set(server.monitor_configs) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as s:
                for i in range(requests + 100):
                    name = ("on", "off")[i % 2]
                    body = {"model": name, "messages": [{"role": "user", "content": f"question {i}"}]}
                    started = time.perf_counter()
                    async with s.post(server.url + "/v1/chat/completions", json=body) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    if i >= 100:
                        times[name].append(time.perf_counter() - started)
        finally:
            await server.stop()
    return times["on"], times["off"]


def hop(requests: int) -> None:
    on, off = asyncio.run(_hop(requests))

    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(xs, q)) * 1000

    print("\n2. deterministic checks on the request path (1 connection, alternating, same gateway)")
    print(f"   checks on : p50 {pct(on, 50):6.3f} ms   p99 {pct(on, 99):6.3f} ms   ({len(on)} requests)")
    print(f"   checks off: p50 {pct(off, 50):6.3f} ms   p99 {pct(off, 99):6.3f} ms   ({len(off)} requests)")
    print(
        f"   added: p50 {pct(on, 50) - pct(off, 50):+.3f} ms (ratio {pct(on, 50) / pct(off, 50):.3f}), "
        f"p99 {pct(on, 99) - pct(off, 99):+.3f} ms (ratio {pct(on, 99) / pct(off, 99):.3f})"
    )


def drift(runs: int, others: str | None) -> None:
    from tether.graders.embed import shared
    from tether.llm.scenarios import SHIFTED, prompts
    from tether.monitor import prompt_drift
    from tether.monitor.llm_config import PromptDrift

    d = PromptDrift()
    alpha = 1.0 / (30 * 86400 / d.check_seconds)
    emb = shared()
    pairs: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    for s in range(runs):
        pairs.append(("null", 200, emb.encode(prompts(100 + s, 200)), emb.encode(prompts(5000 + s, 200))))
    for size in (25, 50, 100, 200):
        for s in range(max(5, runs // 4)):
            pairs.append(
                ("shift", size, emb.encode(prompts(200 + s, 200)), emb.encode(prompts(9000 + s, size, SHIFTED)))
            )
    ours = []
    for kind, size, base, live in pairs:
        started = time.perf_counter()
        r = prompt_drift.two_sample(base, live)
        ours.append((kind, size, r.p_value < alpha and r.statistic >= d.min_shift, time.perf_counter() - started))
    theirs: list[tuple[str, int, bool, float]] | None = None
    if others:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for i, (_, _, base, live) in enumerate(pairs):
                for side, x in (("reference", base), ("current", live)):
                    f = pd.DataFrame(x, columns=[f"e{j}" for j in range(x.shape[1])])
                    f.insert(0, "side", side)
                    f.insert(0, "pair", i)
                    rows.append(f)
            path = Path(tmp) / "pairs.parquet"
            pd.concat(rows).to_parquet(path)
            out = subprocess.run(
                [others, str(ROOT / "llm_evals_others.py"), str(path)], capture_output=True, text=True, check=True
            )
            got = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            theirs = [(pairs[g["pair"]][0], pairs[g["pair"]][1], g["drift_detected"], g["seconds"]) for g in got]

    def summary(name: str, rows: list[tuple[str, int, bool, float]]) -> None:
        null = [r for r in rows if r[0] == "null"]
        fa = sum(r[2] for r in null) / len(null)
        power = {size: np.mean([r[2] for r in rows if r[0] == "shift" and r[1] == size]) for size in (25, 50, 100, 200)}
        smallest = next((size for size, p in power.items() if p >= 0.95), None)
        secs = statistics.median(r[3] for r in rows)
        print(
            f"   {name:<26} false alarms {fa:6.1%} of {len(null)} stable pairs; power at 25/50/100/200 live "
            f"prompts {'/'.join(f'{p:.0%}' for p in power.values())}; smallest window with >=95%: "
            f"{smallest}; {secs:.3f} s per check"
        )

    print("\n3. prompt drift: 200 baseline prompts against a live window, MiniLM embeddings")
    summary(f"tether (MMD, alpha {alpha:.1e})", ours)
    if theirs is not None:
        summary("Evidently (default: model)", theirs)
        ratio = statistics.median(r[3] for r in theirs) / statistics.median(r[3] for r in ours)
        print(f"   seconds per check, Evidently / tether: {ratio:.1f}x")
    else:
        print("   (Evidently not run: pass --others-python bench/.venv-drift/bin/python, or make bench-evals)")


def canary(runs: int) -> None:
    from tether.monitor.sequential import Decision, compare_rates
    from tether.rollout.plan import Plan

    plan = Plan()
    alpha = plan.alpha / (plan.guardrails.tests() * len(plan.steps))
    rng = np.random.default_rng(0)
    needed = []
    for _ in range(runs):
        c_ev = p_ev = p_n = 0
        for n in range(1, 5001):
            c_ev += rng.random() < 0.05
            p_n += 19
            if n >= plan.min_samples and n % 5 == 0:
                r = compare_rates(c_ev, n, p_ev, p_n, margin=plan.guardrails.schema_violation_rate.margin, alpha=alpha)
                if r.decision == Decision.HARM:
                    needed.append(n)
                    break
        else:
            needed.append(5001)
    a = np.array(needed)
    print(
        "\n4. a canary that breaks JSON in 5% of answers, default plan (schema_violation_rate margin 0.01, "
        f"alpha {alpha:.4f} per test), {runs} runs"
    )
    print(
        f"   canary requests to the rollback: median {np.median(a):.0f}, 95th percentile {np.percentile(a, 95):.0f}, "
        f"max {a.max()}"
    )


def ppi(runs: int) -> None:
    from tether.monitor.rates import judge_only_mean, ppi_mean

    rng = np.random.default_rng(11)
    print(f"\n5. prediction-powered inference: 2,000 cheap scores, 100 judged, {runs} runs, 95% intervals")
    for bias in (0.0, 0.25, -0.3):
        cov = covj = 0
        w, wj = [], []
        for _ in range(runs):
            q = rng.beta(4, 2, 2100)
            cheap = np.clip(q + bias + rng.normal(0, 0.08, 2100), 0, 1)
            r, j = ppi_mean(cheap[:2000], cheap[2000:], q[2000:]), judge_only_mean(q[2000:])
            cov += r.low <= 4 / 6 <= r.high
            covj += j.low <= 4 / 6 <= j.high
            w.append(r.high - r.low)
            wj.append(j.high - j.low)
        print(
            f"   cheap grader bias {bias:+.2f}: PPI coverage {cov / runs:.1%} width {np.mean(w):.4f}; judge only "
            f"coverage {covj / runs:.1%} width {np.mean(wj):.4f}; width ratio {np.mean(w) / np.mean(wj):.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the bench)")
    ap.add_argument("--others-python", default=None, help="a Python with Evidently (bench/.venv-drift/bin/python)")
    args = ap.parse_args()
    q = args.quick
    throughput(128 if q else 1024)
    hop(200 if q else 2000)
    drift(8 if q else 100, args.others_python)
    canary(50 if q else 500)
    ppi(100 if q else 1000)


if __name__ == "__main__":
    main()
