"""The code leg of the triad: a git commit, its archive, the uncommitted diff if allowed, the environment.

What tether records for code:

* the commit SHA and, when the tree is dirty and ``allow_dirty`` was given, the binary diff from the commit
  to the work tree (tracked changes and untracked, not-ignored files), stored as a blob;
* a ``git archive`` of the commit (tar), stored as a blob, so the code can be rebuilt without the repository;
* the *tree digest*: the manifest root over the files as used (commit plus diff), which `reproduce` checks
  after rebuilding;
* the environment lock (Python and installed distributions).

The code digest is SHA-256 over the canonical JSON of commit, tree digest, diff digest, environment digest
and the sub-folder the registration pointed at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core.errors import ConflictError, ExternalCommandError, InvalidInputError
from tether.core.hashing import Manifest, digest_json, manifest_of, sha256_bytes
from tether.core.types import Digest
from tether.registry.environment import environment_lock


@dataclass(frozen=True)
class CodeRef:
    digest: Digest
    commit_sha: str
    repo_url: str | None
    subdir: str
    dirty: bool
    diff_blob: Digest | None
    archive_blob: Digest
    tree_digest: Digest
    environment: dict[str, Any]
    environment_digest: Digest

    @staticmethod
    def compute_digest(
        commit_sha: str, tree_digest: str, diff_blob: str | None, environment_digest: str, subdir: str
    ) -> Digest:
        return digest_json(
            {
                "format": "tether-code-v1",
                "commit": commit_sha,
                "tree": tree_digest,
                "diff": diff_blob,
                "environment": environment_digest,
                "subdir": subdir,
            }
        )


@dataclass
class GitCapture:
    """Everything about a work tree needed to register its code, gathered before anything is stored."""

    top: Path
    subdir: str
    commit_sha: str
    repo_url: str | None
    dirty_files: list[str]
    diff: bytes | None
    manifest: Manifest
    environment: dict[str, Any]

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_files)


def _git(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> bytes:
    if shutil.which("git") is None:
        raise ExternalCommandError("git is not installed", hint="install git (apt-get install git)")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, env={**os.environ, **(env or {})}, check=False)
    if check and proc.returncode != 0:
        raise ExternalCommandError(
            f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


def capture(path: str | os.PathLike[str], *, allow_dirty: bool = False, hash_workers: int = 4) -> GitCapture:
    """Inspect the git work tree containing ``path``. Writes nothing (the diff is built in a temp index)."""
    p = Path(path).absolute()
    if not p.exists():
        raise InvalidInputError(f"code path not found: {p}", hint="pass --code with the folder of your training code")
    start = p if p.is_dir() else p.parent
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, check=False)
    if proc.returncode != 0:
        raise InvalidInputError(
            f"{p} is not inside a git work tree",
            hint="commit your training code to git ('git init && git add -A && git commit') and pass --code",
        )
    top = Path(proc.stdout.decode().strip())
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=top, capture_output=True, check=False)
    if head.returncode != 0:
        raise InvalidInputError(
            f"the git repository at {top} has no commits yet", hint="commit your code first ('git commit')"
        )
    commit = head.stdout.decode().strip()
    subdir = start.relative_to(top).as_posix()
    subdir = "" if subdir == "." else subdir
    remote = _git(["config", "--get", "remote.origin.url"], top, check=False).decode().strip() or None
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], top).decode()
    dirty_files = sorted({e[3:] for e in status.split("\0") if len(e) > 3})
    if dirty_files and not allow_dirty:
        shown = ", ".join(dirty_files[:5]) + (f" and {len(dirty_files) - 5} more" if len(dirty_files) > 5 else "")
        raise ConflictError(
            f"the git work tree {top} has uncommitted changes ({len(dirty_files)} files: {shown})",
            hint="commit them, or pass --allow-dirty to store the diff with the version",
        )
    diff = _work_tree_diff(top) if dirty_files else None
    listed = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], top).decode().split("\0")
    files = []
    for rel in sorted(set(filter(None, listed))):
        f = top / rel
        if f.is_file() and not f.is_symlink():
            files.append((rel, f))
    manifest = manifest_of(files, workers=hash_workers)
    return GitCapture(top, subdir, commit, remote, dirty_files, diff, manifest, environment_lock())


def _work_tree_diff(top: Path) -> bytes:
    """Binary diff from HEAD to the work tree, untracked files included, built in a temporary index."""
    index = Path(_git(["rev-parse", "--git-path", "index"], top).decode().strip())
    index = index if index.is_absolute() else top / index
    with tempfile.TemporaryDirectory(prefix="tether-index-") as tmp:
        tmp_index = Path(tmp, "index")
        if index.exists():
            shutil.copyfile(index, tmp_index)
        env = {"GIT_INDEX_FILE": str(tmp_index)}
        _git(["add", "-A", "."], top, env=env)
        return _git(["diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "HEAD"], top, env=env)


def archive(top: Path, commit: str, dest: Path) -> None:
    """Write ``git archive --format=tar`` of ``commit`` to ``dest``."""
    with open(dest, "wb") as out:
        proc = subprocess.run(
            ["git", "archive", "--format=tar", commit],
            cwd=top,
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if proc.returncode != 0:
        raise ExternalCommandError(f"git archive failed: {proc.stderr.decode(errors='replace').strip()}")


def code_digest_of(cap: GitCapture) -> tuple[Digest, Digest | None, Digest]:
    """(code digest, diff digest, environment digest) of a capture."""
    diff_digest = sha256_bytes(cap.diff) if cap.diff is not None else None
    env_digest = digest_json(cap.environment)
    return (
        CodeRef.compute_digest(cap.commit_sha, cap.manifest.root_digest, diff_digest, env_digest, cap.subdir),
        diff_digest,
        env_digest,
    )


def rebuild(archive_tar: Path, diff: bytes | None, dest: Path) -> None:
    """Extract a commit archive into ``dest`` and apply the stored diff on top."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_tar) as tar:
        tar.extractall(dest, filter="data")
    if diff:
        patch = dest.parent / f".{dest.name}.diff"
        patch.write_bytes(diff)
        try:
            # The ceiling stops git from discovering an enclosing repository and applying paths relative to it.
            env = {"GIT_CEILING_DIRECTORIES": str(dest.parent.absolute())}
            proc = subprocess.run(
                ["git", "apply", "--binary", "--whitespace=nowarn", str(patch.absolute())],
                cwd=dest,
                capture_output=True,
                env={**os.environ, **env},
                check=False,
            )
            if proc.returncode != 0:
                raise ExternalCommandError(
                    f"applying the stored diff failed: {proc.stderr.decode(errors='replace').strip()}"
                )
        finally:
            patch.unlink(missing_ok=True)


def verify_tree(root: Path, expected: Manifest, *, workers: int = 4) -> list[str]:
    """Differences between the files listed in ``expected`` and what ``root`` holds (empty when equal)."""
    files = []
    missing = []
    for e in expected.entries:
        f = root / e.path
        if f.is_file():
            files.append((e.path, f))
        else:
            missing.append(f"missing: {e.path}")
    if missing:
        return missing
    found = manifest_of(files, workers=workers)
    return expected.diff(found)
