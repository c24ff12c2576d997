"""Check installed Python distributions and declared dependency floors against known vulnerabilities, offline.

    python tools/advisories.py                      # this interpreter's installed set, the vendored records
    python tools/advisories.py --db ~/advisory-database --db osv-PyPI-all.zip
    python tools/advisories.py --requirements pins.txt   # name==version lines instead of the installed set
    python tools/advisories.py --floors pyproject.toml   # can a declared lower bound resolve to a known-bad version?

Why not pip-audit: it asks PyPI's JSON API or osv.dev about each installed version, and it reads no local
database (pypa/pip-audit#698). Neither service answers from the machines that build tether (the PyPI mirror
has no JSON API, osv.dev is out of reach), so CI could not run it. This reads the same records, in the OSV
format (https://ossf.github.io/osv-schema/), from disk:

* ``tools/advisory-db/``: records copied from the PyPA advisory database, vendored with tether (see its README
  for what they cover and how to refresh them);
* any ``--db`` (or ``TETHER_ADVISORY_DB``, ``os.pathsep``-separated): a checkout of pypa/advisory-database
  (YAML), a directory of OSV JSON, or osv.dev's ``PyPI/all.zip`` export.

A version is affected when it is in a record's ``versions`` list or inside one of its ``ECOSYSTEM`` ranges,
evaluated as the OSV schema says (events sorted by version; ``introduced`` opens, ``fixed`` closes at that
version, ``last_affected`` closes after it). Withdrawn records are skipped. Exit status: 0 clean, 1 findings,
2 bad input (an unreadable database or requirements file), with a message that says which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

VENDORED = Path(__file__).resolve().parent / "advisory-db"
FLOOR_OPERATORS = (">=", "==", "~=", "===")


class BadInput(Exception):
    """Something given to the check cannot be read; the message says what and what to do."""


@dataclass
class Advisory:
    id: str
    aliases: list[str]
    summary: str
    affected: list[dict[str, Any]]
    origin: str

    def fixed_in(self, package: str) -> list[str]:
        out = []
        for entry in self._entries(package):
            for r in entry.get("ranges", []):
                out += [e["fixed"] for e in r.get("events", []) if "fixed" in e]
        return out

    def affects(self, package: str, version: Version) -> bool:
        for entry in self._entries(package):
            if any(_same(version, v) for v in entry.get("versions", [])):
                return True
            for r in entry.get("ranges", []):
                if r.get("type") in ("ECOSYSTEM", "SEMVER") and in_range(version, r.get("events", [])):
                    return True
        return False

    def _entries(self, package: str) -> Iterator[dict[str, Any]]:
        for entry in self.affected:
            pkg = entry.get("package", {})
            if pkg.get("ecosystem") == "PyPI" and canonicalize_name(pkg.get("name", "")) == package:
                yield entry


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _same(version: Version, text: str) -> bool:
    other = _version(text)
    return other is not None and other == version


def in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """The OSV schema's evaluation of one range: walk its events in version order."""
    keyed = []
    for e in events:
        kind, value = next(((k, v) for k, v in e.items() if k in ("introduced", "fixed", "last_affected")), (None, ""))
        if kind is None:
            continue  # "limit" events bound git ranges only
        at = Version("0") if value == "0" else _version(value)
        if at is None:
            continue  # a version this ecosystem cannot order: no claim can be made from it
        keyed.append((at, kind))
    affected = False
    for at, kind in sorted(keyed, key=lambda k: k[0]):
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


@dataclass
class Database:
    by_package: dict[str, list[Advisory]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len({a.id for advisories in self.by_package.values() for a in advisories})

    def add(self, record: dict[str, Any], origin: str) -> None:
        if record.get("withdrawn") or not record.get("id"):
            return
        advisory = Advisory(
            id=str(record["id"]),
            aliases=[str(a) for a in record.get("aliases", [])],
            summary=str(record.get("summary") or (record.get("details") or "").split("\n")[0])[:160],
            affected=list(record.get("affected", [])),
            origin=origin,
        )
        for entry in advisory.affected:
            pkg = entry.get("package", {})
            if pkg.get("ecosystem") != "PyPI" or not pkg.get("name"):
                continue
            known = self.by_package.setdefault(canonicalize_name(pkg["name"]), [])
            if all(a.id != advisory.id for a in known):  # the same record from two databases counts once
                known.append(advisory)

    def load(self, path: Path) -> None:
        if not path.exists():
            raise BadInput(f"advisory database {path} does not exist: give a directory of OSV records or a .zip")
        self.sources.append(str(path))
        if path.is_file() and path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".json"):
                        self.add(_parse(z.read(name), name), f"{path}:{name}")
            return
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".json", ".yaml"))
        for f in files:
            self.add(_parse(f.read_bytes(), str(f)), str(f))


def _parse(raw: bytes, name: str) -> dict[str, Any]:
    try:
        record = json.loads(raw) if name.endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise BadInput(f"{name} is not a readable OSV record: {e}") from e
    if not isinstance(record, dict):
        raise BadInput(f"{name} is not an OSV record (an object with an id and affected packages)")
    return record


@dataclass
class Finding:
    package: str
    version: str
    advisory: Advisory
    what: str  # "installed", "pinned" or "floor"

    def line(self) -> str:
        fixes = ", ".join(self.advisory.fixed_in(self.package)) or "no fixed version"
        aliases = f" ({', '.join(self.advisory.aliases)})" if self.advisory.aliases else ""
        return (
            f"  {self.package} {self.version} ({self.what}): {self.advisory.id}{aliases}, fixed in {fixes}: "
            f"{self.advisory.summary}"
        )


def installed() -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen[canonicalize_name(name)] = dist.version
    return sorted(seen.items())


def pinned(path: Path) -> list[tuple[str, str]]:
    """``name==version`` lines of a requirements or ``pip freeze`` file; anything else is an error."""
    if not path.is_file():
        raise BadInput(f"requirements file {path} does not exist")
    out: list[tuple[str, str]] = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            raise BadInput(f"{path}:{n}: {line!r} is not a requirement: {e}") from e
        pins = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if not pins:
            raise BadInput(f"{path}:{n}: {line!r} is not pinned: write name==version (pip freeze does)")
        out.append((canonicalize_name(req.name), pins[0]))
    return out


def floors(path: Path) -> list[tuple[str, str]]:
    """The lowest version each dependency of a pyproject.toml admits (its ``>=``, ``==`` or ``~=`` bound)."""
    try:
        project = tomllib.loads(path.read_text())["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as e:
        raise BadInput(f"{path} is not a readable pyproject.toml with a [project] table: {e}") from e
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    out: list[tuple[str, str]] = []
    for line in lines:
        req = Requirement(line)
        bounds = [s.version for s in req.specifier if s.operator in FLOOR_OPERATORS]
        if bounds and canonicalize_name(req.name) != canonicalize_name(project.get("name", "")):
            out.append((canonicalize_name(req.name), max(bounds, key=Version)))
    return out


def check(db: Database, versions: Iterable[tuple[str, str]], what: str, ignore: set[str]) -> list[Finding]:
    findings = []
    for package, text in versions:
        version = _version(text)
        if version is None:
            continue
        for advisory in db.by_package.get(package, []):
            if advisory.id in ignore or ignore & set(advisory.aliases):
                continue
            if advisory.affects(package, version):
                findings.append(Finding(package, text, advisory, what))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", action="append", type=Path, default=[], help="more OSV records (dir or .zip)")
    parser.add_argument("--no-vendored", action="store_true", help="leave out tools/advisory-db")
    parser.add_argument("--requirements", type=Path, help="check name==version pins, not the installed set")
    parser.add_argument("--floors", type=Path, help="also check a pyproject.toml's lowest admitted versions")
    parser.add_argument("--ignore-vuln", action="append", default=[], help="an advisory id or alias to skip")
    args = parser.parse_args(argv)

    db = Database()
    try:
        paths = [] if args.no_vendored else [VENDORED]
        paths += [Path(p) for p in os.environ.get("TETHER_ADVISORY_DB", "").split(os.pathsep) if p]
        for path in paths + args.db:
            db.load(path)
        versions = pinned(args.requirements) if args.requirements else installed()
        findings = check(db, versions, "pinned" if args.requirements else "installed", set(args.ignore_vuln))
        if args.floors:
            findings += check(db, floors(args.floors), "lowest version allowed", set(args.ignore_vuln))
    except BadInput as e:
        print(f"advisories: {e}", file=sys.stderr)
        return 2

    covered = sum(1 for name, _ in versions if name in db.by_package)
    scope = (
        f"{len(versions)} distributions checked against {db.count} advisories for {len(db.by_package)} packages "
        f"({covered} of the distributions have advisories on record; databases: {', '.join(db.sources)})"
    )
    if not findings:
        print(f"advisories: no known vulnerability. {scope}")
        return 0
    print(f"advisories: {len(findings)} known vulnerabilities. {scope}", file=sys.stderr)
    for f in sorted(findings, key=lambda f: (f.package, f.advisory.id)):
        print(f.line(), file=sys.stderr)
    print(
        "Raise each to a fixed version (and its floor in pyproject.toml); for one you have judged not to apply, "
        "pass --ignore-vuln ID and say why in the commit.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
