"""The gate on a 1,000,000-row gold set: every test, 1,000 bootstrap resamples, against scipy.stats.bootstrap.

    python bench/gate.py [--rows 1000000] [--resamples 1000] [--scipy-batch 20]

Prints, from one run on one machine:
  - the statistics of the whole fraud gate spec (AUC by DeLong, false-positive rate and recall with floors,
    McNemar, every country slice, demographic parity, edge cases) on precomputed model outputs;
  - the whole `run_gate` (snapshotting the gold set, loading both verified models, predicting, the statistics,
    storing the report);
  - scipy.stats.bootstrap (paired, percentile, vectorised) on one of those metrics, the false-positive-rate
    difference, with the same number of resamples, and the ratio of its time to tether's for that metric.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from tether.core import Settings
from tether.gate import Outputs, decide, evaluate, load_spec, run_gate
from tether.gate import bootstrap as bs
from tether.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud"


def _generate():
    spec = importlib.util.spec_from_file_location("fraud_generate", EXAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--scipy-batch", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="print where run_gate spends its time")
    args = parser.parse_args()
    generate = _generate()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }

    with tempfile.TemporaryDirectory(prefix="tether-bench-gate-") as tmp:
        project = Path(tmp, "project")
        project.mkdir()
        for name in ("generate.py", "train.py", ".gitignore"):
            (project / name).write_bytes((EXAMPLE / name).read_bytes())
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
        (project / "data").mkdir()
        generate(50_000, 7).to_parquet(project / "data" / "train.parquet", index=False)
        t = time.perf_counter()
        gold = generate(args.rows, 99)
        gold.to_parquet(project / "data" / "gold.parquet", index=False)
        print(f"gold set: {len(gold):,} rows generated in {time.perf_counter() - t:.1f} s")

        settings = Settings(home=Path(tmp, "home"), database_url="", blob_url="")
        reg = Registry.open(settings)
        versions = []
        for name, extra in (("champ", []), ("cand", ["--learning-rate", "0.12"])):
            subprocess.run(
                [
                    sys.executable,
                    "train.py",
                    "--data",
                    "data/train.parquet",
                    "--weights",
                    f"model/{name}.pkl",
                    "--metrics",
                    f"model/{name}.json",
                    "--max-iter",
                    "60",
                    *extra,
                ],
                cwd=project,
                check=True,
                capture_output=True,
            )
            versions.append(
                reg.register(
                    "fraud",
                    code=project,
                    data=project / "data/train.parquet",
                    weights=project / f"model/{name}.pkl",
                    flavor="sklearn",
                    target="is_fraud",
                    exclude=["gender"],
                    metrics=json.loads((project / f"model/{name}.json").read_text()),
                )
            )
        reg.set_alias("fraud", "champion", versions[0].ref, reason="bench", force=True)
        spec = load_spec(EXAMPLE / "gate.yaml")
        spec = spec.model_copy(
            update={"mcnemar": True, "bootstrap": spec.bootstrap.model_copy(update={"resamples": args.resamples})}
        )
        spec._base = project

        t = time.perf_counter()
        if args.profile:
            import cProfile
            import pstats

            with cProfile.Profile() as prof:
                report = run_gate(reg, spec, versions[1].ref)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        else:
            report = run_gate(reg, spec, versions[1].ref)
        whole = time.perf_counter() - t
        print(
            f"whole gate (snapshot, load, predict 2 x {len(gold):,}, every test, report): {whole:.2f} s, "
            f"verdict {report.verdict.value}, {len(report.tests)} tests"
        )

        outs = []
        for v in versions:
            m = reg.load(v.ref)
            p = m.predict(gold)["probability"].to_numpy()
            outs.append(Outputs((p >= spec.threshold).astype(np.int64), p))
            m.close()
        y = gold["is_fraud"].to_numpy()
        t = time.perf_counter()
        results, _ = evaluate(spec, gold, y, outs[1], outs[0])
        decide(results, spec.alpha)
        stats_time = time.perf_counter() - t
        print(f"statistics only (every test, {args.resamples} resamples): {stats_time:.2f} s for {len(results)} tests")

        dc, dp = outs[1].decision, outs[0].decision
        t = time.perf_counter()
        counts = bs.cell_counts(y * 4 + dc * 2 + dp, 8)
        c = bs.resample_cells(counts, args.resamples, np.random.default_rng(0))
        neg = c[:, :4].sum(1)
        ours = bs.percentile_interval(c[:, [2, 3]].sum(1) / neg - c[:, [1, 3]].sum(1) / neg, 0.9)
        t_ours = time.perf_counter() - t

        def fpr_diff(yy, a, b, axis=-1):
            negative = yy == 0
            n = negative.sum(axis)
            return (a * negative).sum(axis) / n - (b * negative).sum(axis) / n

        t = time.perf_counter()
        theirs = stats.bootstrap(
            (y, dc, dp),
            fpr_diff,
            paired=True,
            vectorized=True,
            n_resamples=args.resamples,
            batch=args.scipy_batch,
            confidence_level=0.9,
            method="percentile",
            random_state=0,
        ).confidence_interval
        t_scipy = time.perf_counter() - t
        print(f"false-positive-rate difference, {args.resamples} paired resamples of {len(gold):,} rows:")
        print(f"  tether (multinomial cell counts) {t_ours * 1000:8.1f} ms  interval [{ours[0]:+.5f}, {ours[1]:+.5f}]")
        print(
            f"  scipy.stats.bootstrap            {t_scipy * 1000:8.1f} ms  interval "
            f"[{theirs.low:+.5f}, {theirs.high:+.5f}]"
        )
        print(f"  ratio scipy / tether: {t_scipy / t_ours:,.0f}x")
        reg.close()


if __name__ == "__main__":
    main()
