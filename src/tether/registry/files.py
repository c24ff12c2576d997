"""Materialising and loading registered versions: every file fetched is checked against its digest.

`VersionFiles` is the half of `tether.registry.Registry` that turns stored blobs back into weights, data
and code on disk, and loads a version for prediction.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tether.core.errors import IntegrityError
from tether.core.hashing import Manifest
from tether.core.progress import ProgressReporter
from tether.core.types import Digest
from tether.registry import code as code_mod
from tether.registry.flavors import LoadedModel, get_flavor
from tether.registry.lookup import VersionLookup
from tether.registry.version import ModelVersion


class VersionFiles(VersionLookup):
    """Fetch a version's verified files into a folder, or load it."""

    progress: ProgressReporter

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="scratch-", dir=self.settings.tmp_dir))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def manifest(self, digest: Digest, what: str) -> Manifest:
        """A stored manifest, verified: its blob is named by the root digest it must hash to."""
        return Manifest.from_canonical_bytes(self.store.blobs.get_bytes(digest, what=f"{what} manifest"))

    def materialize_weights(self, mv: ModelVersion, dest: Path, *, only: Callable[[str], bool] | None = None) -> Path:
        """Write the verified weights under ``dest``; returns the path a flavor loads (file or folder).
        ``only(path)`` selects some files (an LLM gateway needs the tokenizer, not the weights)."""
        manifest = self.manifest(mv.weights.digest, "weights")
        mv.weights.verify_signature(manifest)
        self._materialize(manifest, dest, f"weights of {mv.ref}", only)
        return dest / manifest.entries[0].path if mv.weights.single_file else dest

    def materialize_data(self, mv: ModelVersion, dest: Path) -> Path:
        manifest = self.manifest(mv.data.digest, "data")
        self._materialize(manifest, dest, f"data of {mv.ref}")
        return dest / manifest.entries[0].path if mv.data.file_count == 1 else dest

    def materialize_code(self, mv: ModelVersion, dest: Path) -> Path:
        """Rebuild the code (archive plus diff) into ``dest`` and check it against the tree manifest."""
        expected = self.manifest(mv.code.tree_digest, "code tree")
        with self._scratch() as scratch:
            tar = scratch / "code.tar"
            self.store.blobs.get_file(mv.code.archive_blob, tar, what=f"code archive of {mv.ref}")
            diff = (
                self.store.blobs.get_bytes(mv.code.diff_blob, what=f"code diff of {mv.ref}")
                if mv.code.diff_blob
                else None
            )
            code_mod.rebuild(tar, diff, dest)
        problems = code_mod.verify_tree(dest, expected, workers=self.settings.hash_workers)
        if problems:
            raise IntegrityError(
                f"rebuilt code of {mv.ref} differs from what was registered: {'; '.join(problems[:5])}",
                expected=mv.code.tree_digest,
                actual="(differs)",
                hint="the archive or diff blob does not rebuild the registered tree",
            )
        return dest / mv.code.subdir if mv.code.subdir else dest

    def _materialize(
        self, manifest: Manifest, dest: Path, what: str, only: Callable[[str], bool] | None = None
    ) -> None:
        with self.progress.task(f"fetching {what}", manifest.total_size) as tick:
            for e in manifest.entries:
                if only is not None and not only(e.path):
                    continue
                self.store.blobs.get_file(e.digest, dest / e.path, what=f"{what}: {e.path}", progress=tick)

    def load(self, ref: str) -> LoadedModel:
        """Load a version for prediction after verifying every digest (and the signature, if any)."""
        mv = self.get(ref)
        fl = get_flavor(mv.flavor)
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"load-{mv.id[:12]}-", dir=self.settings.tmp_dir))
        try:
            weights = self.materialize_weights(mv, workdir / "weights")
            code_dir = self.materialize_code(mv, workdir / "code") if mv.flavor == "python" else None
            predictor = fl.load(weights, code_dir, mv.flavor_config)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        cleanup = weakref.finalize(predictor, shutil.rmtree, workdir, True)
        return LoadedModel(
            mv.id, predictor, mv.input_schema, on_close=cleanup, weights_bytes=int(mv.weights.size_bytes)
        )

    def reproduce(self, ref: str, dest: str | Path, *, retrain: bool = False) -> Any:
        """Materialise code, data and weights into ``dest`` and verify every digest (see `reproduce`)."""
        from tether.registry.reproduce import reproduce

        return reproduce(self, self.get(ref), Path(dest), retrain=retrain)
