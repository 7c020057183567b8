"""Training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint is any nested state (dicts, lists, tuples, python scalars, tensors,
numpy arrays): :func:`encode` moves every tensor into a flat ``{dotted.path: tensor}``
map and leaves a ``{"__tensor__": path}`` marker in its place, so loading reads
numbers and JSON only and a checkpoint file cannot run code.

On disk, in the checkpoint directory::

    tensors-<random>.safetensors   the tensors of one checkpoint
    checkpoint.json                everything else, naming its tensor file

Both are written to temporary names, flushed to disk and renamed; ``checkpoint.json``
goes last and is the commit marker. A crash at any moment leaves either the previous
``checkpoint.json`` with its (still present) tensor file, or the new one with its.
Tensor files no ``checkpoint.json`` names are removed after the commit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
TENSOR_PREFIX = "tensors-"
TENSOR_SUFFIX = ".safetensors"
TEMP_PREFIX = ".tmp-"

# Markers of values JSON cannot hold directly. A dict whose keys are not all plain
# strings (an optimizer's state is keyed by int) is stored as a list of pairs.
_TENSOR, _ARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"

# safetensors has no unsigned types wider than 8 bits; numpy's RNG key is uint32.
_WIDENED = {np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)}


class CheckpointError(Exception):
    """The checkpoint on disk cannot be read."""


def encode(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """``state -> (json_tree, {path: cpu tensor})``; see the module docstring."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    return tree, tensors


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(tree, list):
        return [decode(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if _TENSOR in tree:
        return tensors[tree[_TENSOR]]
    if _ARRAY in tree:
        return tensors[tree[_ARRAY]].numpy().astype(tree["dtype"])
    if _TUPLE in tree:
        return tuple(decode(item, tensors) for item in tree[_TUPLE])
    if _ITEMS in tree:
        return {decode(k, tensors): decode(v, tensors) for k, v in tree[_ITEMS]}
    return {key: decode(value, tensors) for key, value in tree.items()}


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return {_TENSOR: _put(tensors, path, value.detach().cpu().contiguous())}
    if isinstance(value, np.ndarray):
        stored = value.astype(np.int64) if value.dtype in _WIDENED else value
        tensor = torch.from_numpy(np.ascontiguousarray(stored))
        return {_ARRAY: _put(tensors, path, tensor), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {
            _TUPLE: [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
        }
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        return {
            _ITEMS: [
                [k, _encode(v, _join(path, str(k)), tensors)] for k, v in value.items()
            ]
        }
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint cannot hold a {type(value).__name__} at {path!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _put(tensors: dict[str, torch.Tensor], path: str, tensor: torch.Tensor) -> str:
    # Dotted paths could collide ("a.b" as one key and as a nesting); refuse rather
    # than overwrite one tensor with another.
    if path in tensors:
        raise ValueError(f"two checkpoint tensors map to the key {path!r}")
    # A copy: safetensors refuses tensors that share storage (tied weights, views),
    # and the caller may go on updating the original in place.
    tensors[path] = tensor.clone()
    return path


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as the directory's checkpoint, replacing the previous one
    only once the new one is complete on disk."""
    directory.mkdir(parents=True, exist_ok=True)
    tree, tensors = encode(state)
    tensor_name = f"{TENSOR_PREFIX}{uuid.uuid4().hex}{TENSOR_SUFFIX}"
    manifest = {"format_version": FORMAT_VERSION, "tensors": tensor_name, "state": tree}

    temp = directory / f"{TEMP_PREFIX}{tensor_name}"
    save_file(tensors, str(temp))
    _commit(temp, directory / tensor_name)

    temp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}.json"
    temp.write_text(json.dumps(manifest, allow_nan=False))
    _commit(temp, directory / MANIFEST)
    _fsync_directory(directory)

    for stale in directory.iterdir():
        stale_tensors = (
            stale.name.startswith(TENSOR_PREFIX) and stale.name != tensor_name
        )
        if stale_tensors or stale.name.startswith(TEMP_PREFIX):
            stale.unlink(missing_ok=True)


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The state of the directory's checkpoint, or None when there is none."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format {manifest.get('format_version')!r} is not "
                f"{FORMAT_VERSION}"
            )
        tensors = load_file(str(directory / manifest["tensors"]), device="cpu")
        return decode(manifest["state"], tensors)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot read the checkpoint in {directory}: {exc}"
        ) from exc


def _commit(temp: Path, final: Path) -> None:
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)


def _fsync_directory(directory: Path) -> None:
    # The renames are durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def capture_rng() -> dict[str, Any]:
    """Every RNG the training touches: torch CPU and CUDA, numpy, python."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, key, int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, key, pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
