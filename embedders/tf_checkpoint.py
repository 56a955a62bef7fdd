"""A numpy reader for TensorFlow checkpoints in the tensor-bundle format (no TensorFlow, no protobuf package).

A checkpoint prefix `P` has two files:
  * `P.index`: an SSTable (leveldb table format) mapping each variable name to a `BundleEntryProto`
    (dtype, shape, shard id, byte offset, byte size); the empty key holds the `BundleHeaderProto`.
  * `P.data-00000-of-0000N`: the raw little-endian tensor bytes, concatenated.

Only what TensorFlow writes for bundles is supported: uncompressed table blocks (TF disables snappy for
bundles), numeric dtypes, unsliced tensors. Anything else raises `CheckpointFormatError` naming the file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57  # leveldb table magic number, last 8 bytes of the footer
FOOTER_SIZE = 48  # two block handles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # 1-byte compression type + 4-byte crc32c after every block

# tensorflow/core/framework/types.proto DataType enum -> numpy little-endian dtype
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


class CheckpointFormatError(ValueError):
    """A checkpoint file is missing, truncated or uses a feature this reader does not support."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lives: `size` bytes at `offset` of data shard `shard_id`."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _varint(buffer: bytes, position: int, source: Path) -> tuple[int, int]:
    """Decode a base-128 varint at `position`; returns (value, next position)."""
    value = 0
    shift = 0
    while True:
        if position >= len(buffer):
            raise CheckpointFormatError(f"{source}: truncated varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise CheckpointFormatError(f"{source}: varint longer than 10 bytes")


def _protobuf_fields(message: bytes, source: Path) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into (field number, value): ints for varint/fixed fields, bytes for
    length-delimited ones."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(message):
        key, position = _varint(message, position, source)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(message, position, source)
        elif wire_type == 1:
            value = int.from_bytes(message[position : position + 8], "little")
            position += 8
        elif wire_type == 2:
            length, position = _varint(message, position, source)
            value = message[position : position + length]
            position += length
        elif wire_type == 5:
            value = int.from_bytes(message[position : position + 4], "little")
            position += 4
        else:
            raise CheckpointFormatError(f"{source}: unsupported protobuf wire type {wire_type}")
        if position > len(message):
            raise CheckpointFormatError(f"{source}: truncated protobuf record")
        fields.append((number, value))
    return fields


def _parse_entry(name: str, record: bytes, source: Path) -> TensorEntry:
    """Decode a BundleEntryProto: 1 dtype, 2 shape (TensorShapeProto), 3 shard_id, 4 offset, 5 size, 7 slices."""
    dtype_code, shape, shard_id, offset, size = 0, [], 0, 0, 0
    for number, value in _protobuf_fields(record, source):
        if number == 1:
            dtype_code = value
        elif number == 2:
            for dim_number, dim in _protobuf_fields(value, source):
                if dim_number == 2:  # TensorShapeProto.dim; Dim.size is field 1
                    sizes = [v for n, v in _protobuf_fields(dim, source) if n == 1]
                    shape.append(sizes[0] if sizes else 0)
        elif number == 3:
            shard_id = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 7:
            raise CheckpointFormatError(f"{source}: variable {name!r} is stored in slices (not supported)")
    if dtype_code not in TF_DTYPES:
        raise CheckpointFormatError(f"{source}: variable {name!r} has unsupported TF dtype code {dtype_code}")
    dtype = TF_DTYPES[dtype_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected != size:
        raise CheckpointFormatError(f"{source}: variable {name!r} has {size} bytes, shape {shape} needs {expected}")
    return TensorEntry(name, dtype, tuple(shape), shard_id, offset, size)


def _read_block(data: bytes, position: int, size: int, source: Path) -> bytes:
    """The contents of the table block at (position, size), checked for truncation and compression."""
    end = position + size + BLOCK_TRAILER_SIZE
    if end > len(data):
        raise CheckpointFormatError(f"{source}: truncated table (block at byte {position} runs past the end)")
    compression = data[position + size]
    if compression != 0:
        raise CheckpointFormatError(f"{source}: compressed table block (type {compression}) is not supported")
    return data[position : position + size]


def _block_entries(block: bytes, source: Path) -> list[tuple[bytes, bytes]]:
    """Decode the prefix-compressed (key, value) entries of one block, ignoring its restart array."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{source}: table block shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (num_restarts + 1)
    if limit < 0:
        raise CheckpointFormatError(f"{source}: corrupt table block (restart count {num_restarts})")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    position = 0
    while position < limit:
        shared, position = _varint(block, position, source)
        unshared, position = _varint(block, position, source)
        value_length, position = _varint(block, position, source)
        if shared > len(key) or position + unshared + value_length > limit:
            raise CheckpointFormatError(f"{source}: corrupt table entry at block byte {position}")
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        entries.append((key, block[position : position + value_length]))
        position += value_length
    return entries


def read_index(index_path: str | Path) -> dict[str, TensorEntry]:
    """Parse a bundle `.index` file into {variable name: TensorEntry}, in the file's (sorted) key order."""
    source = Path(index_path)
    if not source.is_file():
        raise CheckpointFormatError(f"{source}: checkpoint index file not found")
    data = source.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise CheckpointFormatError(f"{source}: {len(data)} bytes, too short for a table footer (truncated?)")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise CheckpointFormatError(f"{source}: bad table magic number (not a checkpoint index, or truncated)")
    _, position = _varint(footer, 0, source)  # metaindex handle offset (unused: bundles have no meta blocks)
    _, position = _varint(footer, position, source)
    index_offset, position = _varint(footer, position, source)
    index_size, _ = _varint(footer, position, source)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, source), source):
        block_offset, position = _varint(handle, 0, source)
        block_size, _ = _varint(handle, position, source)
        for key, value in _block_entries(_read_block(data, block_offset, block_size, source), source):
            if key == b"":  # BundleHeaderProto: 1 num_shards, 2 endianness (0 little), 3 version
                header = dict(_protobuf_fields(value, source))
                if header.get(2, 0) != 0:
                    raise CheckpointFormatError(f"{source}: big-endian checkpoint is not supported")
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value, source)
    return entries


class TFCheckpoint:
    """Read-only view of a tensor-bundle checkpoint given its prefix (the path without `.index`)."""

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        self.index_path = Path(self.prefix + ".index")
        self.entries = read_index(self.index_path)
        shards = {entry.shard_id for entry in self.entries.values()}
        total = max(shards, default=0) + 1
        self.data_paths = [Path(f"{self.prefix}.data-{i:05d}-of-{total:05d}") for i in range(total)]
        for path in self.data_paths:
            if not path.is_file():
                raise CheckpointFormatError(f"{path}: checkpoint data shard not found")

    def variables(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{name: (shape, dtype)} for every stored variable."""
        return {name: (entry.shape, entry.dtype) for name, entry in self.entries.items()}

    def read(self, name: str) -> np.ndarray:
        """The tensor stored under `name` as a new numpy array of its stored shape and dtype."""
        if name not in self.entries:
            raise KeyError(f"{self.index_path}: no variable {name!r}")
        entry = self.entries[name]
        path = self.data_paths[entry.shard_id]
        with open(path, "rb") as handle:
            handle.seek(entry.offset)
            raw = handle.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointFormatError(f"{path}: truncated data for variable {name!r}")
        return np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()
