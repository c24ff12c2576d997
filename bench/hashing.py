"""Hashing throughput: tether against `sha256sum` on the same file, in the same run.

    python bench/hashing.py [--size-mib 1024] [--repeat 3]

Writes a file of incompressible bytes (1 GiB by default) and a folder of 8 files of 1/8 the size, warms the
page cache, then times (best of --repeat, alternating order):
  - tether.core.hash_file vs `sha256sum FILE`;
  - tether.core.hash_tree on the folder (parallel threads) vs `sha256sum` over the same files.
Prints MiB/s and the ratio tether/sha256sum (above 1.0 means tether is faster).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from tether.core import hash_file, hash_tree


def _write(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = 64 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(rng.bytes(n))
            left -= n


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        big = Path(tmp, "big.bin")
        _write(big, size, 1)
        folder = Path(tmp, "folder")
        folder.mkdir()
        for i in range(8):
            _write(folder / f"part-{i}.bin", size // 8, 10 + i)
        files = sorted(str(p) for p in folder.iterdir())
        subprocess.run(["cat", str(big), *files], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

        expected = subprocess.run(["sha256sum", str(big)], capture_output=True, text=True, check=True).stdout.split()[0]
        if hash_file(big) != expected:
            raise SystemExit("tether and sha256sum disagree: bug")

        rows = []
        t_cli = _best(lambda: subprocess.run(["sha256sum", str(big)], capture_output=True, check=True), args.repeat)
        t_tether = _best(lambda: hash_file(big), args.repeat)
        rows.append(("one file", t_tether, t_cli))
        workers = min(4, os.cpu_count() or 1)
        t_cli_tree = _best(lambda: subprocess.run(["sha256sum", *files], capture_output=True, check=True), args.repeat)
        t_tree = _best(lambda: hash_tree(folder, workers=workers), args.repeat)
        rows.append((f"8 files, {workers} threads", t_tree, t_cli_tree))

    mib = size / (1 << 20)
    print(f"hashing {mib:.0f} MiB, best of {args.repeat}, {os.cpu_count()} CPUs")
    print(f"{'case':<22}{'tether MiB/s':>14}{'sha256sum MiB/s':>18}{'ratio':>8}")
    for name, t, base in rows:
        print(f"{name:<22}{mib / t:>14.0f}{mib / base:>18.0f}{base / t:>8.2f}")


if __name__ == "__main__":
    main()
