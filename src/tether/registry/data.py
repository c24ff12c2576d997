"""The data leg of the triad: a whole training-data snapshot (Parquet or CSV files, or an in-memory table).

The snapshot digest is the manifest root digest (the manifest's canonical bytes are stored as a blob, so the
blob's name is that digest) over every byte of every file (never a sample of rows). The
schema and the row count are read with pyarrow when the snapshot is taken; a file that pyarrow cannot read
as its format is refused before anything is stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from tether.core.errors import InvalidInputError
from tether.core.hashing import Manifest, Progress, hash_tree
from tether.core.types import Digest

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class DataSnapshot:
    digest: Digest
    format: str
    schema: list[dict[str, Any]]
    row_count: int
    size_bytes: int
    file_count: int


@dataclass
class DataCapture:
    """A dataset inspected and hashed, not yet stored."""

    root: Path
    format: str
    manifest: Manifest
    schema: list[dict[str, Any]]
    row_count: int

    @property
    def files(self) -> list[tuple[str, Path]]:
        if self.root.is_file():
            return [(self.root.name, self.root)]
        return [(e.path, self.root / e.path) for e in self.manifest.entries]


def schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def detect_format(path: Path) -> tuple[str, list[Path]]:
    """The format of a data file or folder, and its data files. Refuses mixed or unknown files."""
    if not path.exists():
        raise InvalidInputError(f"dataset not found: {path}", hint="pass --data with a Parquet or CSV file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise InvalidInputError(f"dataset folder {path} holds no files", hint="point --data at Parquet or CSV files")
    formats = set()
    for f in files:
        fmt = FORMATS.get(f.suffix.lower())
        if fmt is None:
            raise InvalidInputError(
                f"unsupported file in dataset {path}: {f.name}",
                hint="a data snapshot holds .parquet or .csv files; move other files out of the folder",
            )
        formats.add(fmt)
    if len(formats) > 1:
        raise InvalidInputError(
            f"dataset {path} mixes formats ({', '.join(sorted(formats))})",
            hint="keep one format per snapshot",
        )
    return formats.pop(), files


def inspect(path: str | os.PathLike[str], *, hash_workers: int = 4, progress: Progress | None = None) -> DataCapture:
    """Read the schema and row count of a dataset and hash all of its bytes. Writes nothing."""
    root = Path(path).absolute()
    fmt, files = detect_format(root)
    try:
        dataset = ds.dataset([str(f) for f in files], format=fmt)
        schema = dataset.schema
        # A CSV's types are inferred from its first block; converting every batch finds a bad value further
        # down now, before anything is stored (counting rows alone would not look at the values).
        row_count = sum(b.num_rows for b in dataset.to_batches()) if fmt == "csv" else dataset.count_rows()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise InvalidInputError(
            f"cannot read dataset {root} as {fmt}: {str(e).splitlines()[0]}",
            hint="check that the files are complete and really are " + fmt,
        ) from None
    if not schema.names:
        raise InvalidInputError(f"dataset {root} has no columns")
    manifest = hash_tree(root, workers=hash_workers, progress=progress)
    return DataCapture(root, fmt, manifest, schema_json(schema), row_count)


def write_table(table: Any, dest: Path) -> Path:
    """Write a pandas DataFrame or pyarrow Table to ``dest`` as one Parquet file (zstd) and return its path.

    The bytes (and so the digest) are stable for the same table and the same pyarrow version.
    """
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        try:
            table = pa.Table.from_pandas(table, preserve_index=False)
        except (TypeError, ValueError, pa.ArrowException) as e:
            raise InvalidInputError(
                f"cannot convert {type(table).__name__} to an Arrow table: {e}",
                hint="pass a pandas DataFrame, a pyarrow Table, or a path to Parquet/CSV files",
            ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dest, compression="zstd")
    return dest


def read_table(path: Path, fmt: str) -> pa.Table:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return ds.dataset([str(f) for f in files], format=fmt).to_table()


def read_head(path: Path, fmt: str, n: int) -> pa.Table:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return ds.dataset([str(f) for f in files], format=fmt).head(n)
