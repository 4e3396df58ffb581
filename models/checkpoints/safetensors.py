"""Reading safetensors files with numpy alone (no torch, no `safetensors` package).

The format: an 8-byte little-endian header length N, N bytes of JSON naming each tensor's
dtype, shape and byte range in the data that follows, then the raw little-endian data.
Tensors are read one at a time (only the headers and sizes are read to check a file), so
importing a checkpoint holds one float32 copy of the weights (Keras' variables) plus the
tensor being converted.

A sharded checkpoint lists its shards in `model.safetensors.index.json` (`weight_map`:
tensor name -> file). Every problem is a UsageError naming the file and the tensor.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from pipeline.core.errors import UsageError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# safetensors dtype -> numpy dtype (BF16 is read as uint16 and widened to float32).
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
           "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
# A header larger than this is not a safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100_000_000


class SafetensorsFile:
    """One safetensors file: its tensors' names, shapes, and their values on demand.

    Args:
        path: the file.

    Raises:
        UsageError: the file is missing, truncated or not safetensors.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such weights file")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise UsageError(f"{path}: truncated ({size} bytes, not a safetensors file)")
            (header_size,) = struct.unpack("<Q", prefix)
            if header_size > min(_MAX_HEADER, size - 8):
                raise UsageError(f"{path}: truncated or not safetensors (its header claims "
                                 f"{header_size} bytes, the file has {size})")
            try:
                header = json.loads(f.read(header_size))
            except ValueError as err:
                raise UsageError(f"{path}: its safetensors header is not JSON ({err})") from None
        header.pop("__metadata__", None)
        self.offset = 8 + header_size
        self.entries = header
        self._check_ranges(size)

    def _check_ranges(self, size: int) -> None:
        for name, entry in self.entries.items():
            dtype = entry.get("dtype")
            if dtype not in _DTYPES:
                raise UsageError(f"{self.path}: tensor {name} has dtype {dtype!r}, which "
                                 "lmpipe does not read")
            begin, end = entry["data_offsets"]
            expected = int(np.prod(entry["shape"], dtype=np.int64)) * np.dtype(_DTYPES[dtype]).itemsize
            if end - begin != expected:
                raise UsageError(f"{self.path}: tensor {name} holds {end - begin} bytes, its "
                                 f"shape {entry['shape']} needs {expected}")
            if self.offset + end > size:
                raise UsageError(f"{self.path}: truncated ({size} bytes; tensor {name} ends at "
                                 f"byte {self.offset + end})")

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple:
        return tuple(self.entries[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        """The tensor `name` as a float32 array (floating types) or its own integer type."""
        entry = self.entries[name]
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        values = np.fromfile(self.path, dtype=dtype, count=(end - begin) // dtype.itemsize,
                             offset=self.offset + begin).reshape(entry["shape"])
        if entry["dtype"] == "BF16":
            return (values.astype(np.uint32) << 16).view(np.float32)
        if values.dtype.kind == "f":
            return values.astype(np.float32, copy=False)
        return values


class Tensors:
    """The tensors of a checkpoint directory, single-file or sharded, by name.

    Args:
        directory: holds `model.safetensors`, or `model.safetensors.index.json` and shards.

    Raises:
        UsageError: neither is there (naming what is), or a shard is missing or bad.
    """

    def __init__(self, directory: str):
        self.origin = directory
        index = os.path.join(directory, INDEX_FILE)
        if os.path.isfile(index):
            try:
                with open(index, encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (ValueError, KeyError, TypeError) as err:
                raise UsageError(f"{index}: not a safetensors index ({err})") from None
            files = {name: SafetensorsFile(os.path.join(directory, name))
                     for name in sorted(set(weight_map.values()))}
            self._where = {tensor: files[name] for tensor, name in weight_map.items()}
            for tensor, file in self._where.items():
                if tensor not in file.entries:
                    raise UsageError(f"{file.path}: has no tensor {tensor} "
                                     f"({INDEX_FILE} says it does)")
        elif os.path.isfile(os.path.join(directory, SINGLE_FILE)):
            file = SafetensorsFile(os.path.join(directory, SINGLE_FILE))
            self._where = {tensor: file for tensor in file.names()}
        else:
            present = ", ".join(sorted(n for n in os.listdir(directory)
                                       if n.endswith((".bin", ".pt", ".pth", ".h5", ".ckpt"))))
            hint = (f" (it has {present}; lmpipe reads safetensors only: save the model "
                    "with save_pretrained(safe_serialization=True))" if present else "")
            raise UsageError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple:
        return self._where[name].shape(name)

    def file_of(self, name: str) -> str:
        return self._where[name].path

    def get(self, name: str) -> np.ndarray:
        return self._where[name].get(name)
