"""Checkpoint files: a tensor file and a JSON manifest, committed atomically."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from workers.engine import checkpoint
from workers.engine.checkpoint import (
    MANIFEST,
    CheckpointError,
    capture_rng,
    decode,
    encode,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def sample_state(value: float = 1.0) -> dict:
    """Shapes like a trainer checkpoint: an optimizer keyed by int, tuples, arrays."""
    return {
        "model": {
            "net.0.weight": torch.full((2, 3), value),
            "net.0.bias": torch.ones(2),
        },
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2, 3)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "counts": torch.arange(4, dtype=torch.int64),
        "flags": torch.tensor([True, False]),
        "bytes": torch.tensor([1, 2, 255], dtype=torch.uint8),
        "probs": np.array([[0.25, 0.5]], dtype=np.float32),
        "key": np.array([1, 2**32 - 1], dtype=np.uint32),
        "scalar": np.float64(0.5),
        "history": [{"epoch": 1, "val_macro_f1": None, "name": "a"}],
        "__odd": 1,
    }


def assert_same(got, expected):
    assert type(got) is type(expected) or (
        isinstance(expected, np.generic) and type(got) is float
    ), (type(got), type(expected))
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype
        assert torch.equal(got, expected)
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    elif isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_same(a, b)
    else:
        assert got == expected


def test_encode_decode_round_trip_keeps_types_keys_and_dtypes():
    state = sample_state()
    tree, tensors = encode(state)
    json.dumps(tree, allow_nan=False)  # everything but the tensors is plain JSON
    assert sorted(tensors) == [
        "bytes",
        "counts",
        "flags",
        "key",
        "model.net.0.bias",
        "model.net.0.weight",
        "optimizer.state.0.exp_avg",
        "optimizer.state.0.step",
        "probs",
    ]
    assert_same(decode(tree, tensors), state)


def test_encode_copies_tensors_so_later_updates_do_not_leak_in():
    weight = torch.zeros(3)
    _, tensors = encode({"w": weight})
    weight.add_(1.0)
    assert torch.equal(tensors["w"], torch.zeros(3))


def test_encode_refuses_colliding_paths_and_unknown_types():
    with pytest.raises(ValueError, match="two checkpoint tensors map to the key 'a.b'"):
        encode({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}})
    with pytest.raises(TypeError, match="checkpoint cannot hold a set at 'x'"):
        encode({"x": {1, 2}})


def test_save_writes_one_tensor_file_and_a_manifest_and_loads_back(tmp_path):
    save_checkpoint(tmp_path, sample_state())

    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == MANIFEST
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["tensors"] == names[1]
    with safe_open(str(tmp_path / names[1]), framework="pt") as handle:
        assert "model.net.0.weight" in handle.keys()
    assert_same(load_checkpoint(tmp_path), sample_state())


def test_a_new_checkpoint_replaces_the_old_and_removes_its_tensors(tmp_path):
    save_checkpoint(tmp_path, sample_state(1.0))
    save_checkpoint(tmp_path, sample_state(2.0))

    assert len(list(tmp_path.iterdir())) == 2
    assert_same(load_checkpoint(tmp_path), sample_state(2.0))


def test_a_crash_before_the_manifest_commit_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    save_checkpoint(tmp_path, sample_state(1.0))
    real_commit = checkpoint._commit

    def crash_on_manifest(temp, final):
        if final.name == MANIFEST:
            raise OSError("disk full")
        real_commit(temp, final)

    monkeypatch.setattr(checkpoint, "_commit", crash_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, sample_state(2.0))
    assert_same(load_checkpoint(tmp_path), sample_state(1.0))

    # The next good save sweeps the orphaned tensor file and the temporary manifest.
    monkeypatch.setattr(checkpoint, "_commit", real_commit)
    save_checkpoint(tmp_path, sample_state(3.0))
    assert len(list(tmp_path.iterdir())) == 2
    assert_same(load_checkpoint(tmp_path), sample_state(3.0))


def test_load_returns_none_without_a_manifest(tmp_path):
    assert load_checkpoint(tmp_path) is None
    assert load_checkpoint(tmp_path / "missing") is None


def test_load_raises_checkpoint_error_on_damage(tmp_path):
    save_checkpoint(tmp_path, sample_state())
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    (tmp_path / manifest["tensors"]).write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path)

    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CheckpointError, match="checkpoint format 99 is not 1"):
        load_checkpoint(tmp_path)


def draws() -> tuple:
    return (
        torch.rand(3).tolist(),
        np.random.random(3).tolist(),
        np.random.normal(),
        [random.random() for _ in range(3)],
        random.gauss(0, 1),
    )


def test_rng_states_survive_a_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in python's
    save_checkpoint(tmp_path, {"rng": capture_rng()})
    expected = draws()

    restore_rng(load_checkpoint(tmp_path)["rng"])
    assert draws() == expected
