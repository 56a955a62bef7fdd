"""The numpy reader of TensorFlow tensor bundles, on the two MusiCNN checkpoints shipped in the musicnn wheel."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedders.musicnn import shipped_checkpoint_dir
from embedders.tf_checkpoint import CheckpointFormatError, TFCheckpoint, read_index

DATASETS = ["MTT", "MSD"]
# (name, shape) of the model weights of a musicnn checkpoint, from musicnn's models.py layer definitions
EXPECTED_SHAPES = {
    "batch_normalization/gamma": (1,),
    "conv2d/kernel": (7, 38, 1, 204),
    "conv2d_1/kernel": (7, 67, 1, 204),
    "conv2d_2/kernel": (128, 1, 1, 51),
    "conv2d_3/kernel": (64, 1, 1, 51),
    "conv2d_4/kernel": (32, 1, 1, 51),
    "conv2d_5/kernel": (7, 561, 1, 64),
    "conv2d_6/kernel": (7, 64, 1, 64),
    "conv2d_7/kernel": (7, 64, 1, 64),
    "batch_normalization_9/moving_variance": (1506,),
    "dense/kernel": (1506, 200),
    "dense_1/kernel": (200, 50),
    "dense_1/bias": (50,),
    "beta1_power": (),
}


def _prefix(dataset: str) -> str:
    folder = shipped_checkpoint_dir(dataset)
    if not (folder / ".index").is_file():
        pytest.skip(f"{folder}: musicnn checkpoint not installed (pip install --no-deps musicnn==0.1.0)")
    return str(folder) + "/"


@pytest.mark.parametrize("dataset", DATASETS)
def test_lists_variables_with_shapes_and_dtypes(dataset: str) -> None:
    checkpoint = TFCheckpoint(_prefix(dataset))
    variables = checkpoint.variables()
    # trainable: 11 batch norms x 2 + 8 convs x 2 + 2 dense x 2 = 42, each with 2 Adam slots;
    # plus 11 x 2 batch-norm moving statistics and the 2 Adam beta powers
    assert len(variables) == 42 * 3 + 22 + 2
    assert list(variables) == sorted(variables)  # SSTable keys come out sorted
    for name, shape in EXPECTED_SHAPES.items():
        assert variables[name] == (shape, np.dtype("float32")), name
    assert all(dtype == np.dtype("float32") for _, dtype in variables.values())


@pytest.mark.parametrize("dataset", DATASETS)
def test_entries_tile_the_data_file(dataset: str) -> None:
    checkpoint = TFCheckpoint(_prefix(dataset))
    spans = sorted((entry.offset, entry.size) for entry in checkpoint.entries.values())
    assert spans[0][0] == 0
    for (offset, size), (next_offset, _) in zip(spans, spans[1:]):
        assert offset + size == next_offset  # contiguous, no overlap
    assert spans[-1][0] + spans[-1][1] == checkpoint.data_paths[0].stat().st_size


def test_read_returns_the_stored_values() -> None:
    checkpoint = TFCheckpoint(_prefix("MTT"))
    kernel = checkpoint.read("dense_1/kernel")
    assert kernel.shape == (200, 50) and kernel.dtype == np.float32 and np.isfinite(kernel).all()
    entry = checkpoint.entries["dense_1/kernel"]
    raw = checkpoint.data_paths[0].read_bytes()[entry.offset : entry.offset + entry.size]
    np.testing.assert_array_equal(kernel.reshape(-1), np.frombuffer(raw, "<f4"))
    variance = checkpoint.read("batch_normalization_9/moving_variance")
    assert (variance > 0).all()  # variances: a misaligned read would give negative or garbage values
    with pytest.raises(KeyError, match="no variable 'missing'"):
        checkpoint.read("missing")


def _copy_checkpoint(tmp_path: Path) -> Path:
    folder = shipped_checkpoint_dir("MTT")
    _prefix("MTT")
    for name in (".index", ".data-00000-of-00001"):
        shutil.copy(folder / name, tmp_path / name)
    return tmp_path / ".index"


def test_truncated_index_names_the_file(tmp_path: Path) -> None:
    index = _copy_checkpoint(tmp_path)
    content = index.read_bytes()
    index.write_bytes(content[: len(content) // 2])
    with pytest.raises(CheckpointFormatError, match=f"{index}: bad table magic"):
        read_index(index)
    index.write_bytes(content[:10])
    with pytest.raises(CheckpointFormatError, match=f"{index}: 10 bytes, too short"):
        read_index(index)


def test_index_with_blocks_cut_out_names_the_file(tmp_path: Path) -> None:
    index = _copy_checkpoint(tmp_path)
    content = index.read_bytes()
    index.write_bytes(content[:100] + content[-48:])  # valid footer, but its block handles point past the end
    with pytest.raises(CheckpointFormatError, match=f"{index}: truncated table"):
        read_index(index)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointFormatError, match="index file not found"):
        TFCheckpoint(tmp_path / "nothing")
    index = _copy_checkpoint(tmp_path)
    (tmp_path / ".data-00000-of-00001").unlink()
    with pytest.raises(CheckpointFormatError, match=r"\.data-00000-of-00001: checkpoint data shard not found"):
        TFCheckpoint(str(index)[: -len(".index")])
