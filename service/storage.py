"""Files under ``data_dir``: dataset arrays, models, upload staging.

Every write goes to a temporary name in the same directory and is renamed into place,
so a reader never sees half a file and a crash leaves no torn artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

FEATURES_FILE = "features.npy"
LABELS_FILE = "labels.npy"


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    @property
    def uploads(self) -> Path:
        path = self.root / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_upload_path(self) -> Path:
        """A fresh staging file; the client's filename is never part of a path."""
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.uploads)
        os.close(fd)
        return Path(name)

    def write_arrays(self, key: str, features: np.ndarray, labels: np.ndarray) -> None:
        directory = self.path(key)
        directory.mkdir(parents=True, exist_ok=True)
        _save_npy(directory / FEATURES_FILE, features)
        _save_npy(directory / LABELS_FILE, labels)

    # TODO(a sweep that deletes directories no row names): arrays written by an API
    # process killed before its commit stay on disk; they are never read.
    def remove(self, key: str) -> None:
        """Delete what a key names (an orphan left by a lost race); missing is fine."""
        shutil.rmtree(self.path(key), ignore_errors=True)

    def read_arrays(
        self, key: str, mmap: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``features [rows, n_features]`` float32, ``labels [rows, n_labels]`` uint8."""
        directory = self.path(key)
        mode = "r" if mmap else None
        return (
            np.load(directory / FEATURES_FILE, mmap_mode=mode, allow_pickle=False),
            np.load(directory / LABELS_FILE, mmap_mode=mode, allow_pickle=False),
        )


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
