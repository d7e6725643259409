"""Artifact I/O: atomic writes, Parquet tables with embedding columns, JSON.

Every writer goes through a temporary file and a rename, so an interrupted or failed stage never
leaves a half-written artifact behind for DVC (or a person) to mistake for a finished one. The file
is flushed to disk before the rename (a power cut cannot leave an empty file under the final name) and
gets the permissions the umask allows, as a plain `open` would (mkstemp alone makes it 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: str | Path, digest=None):
    """SHA-256 of a file's bytes, read in 16 MiB blocks (or fed into `digest`, to hash several files)."""
    digest = digest or hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest


def _finite(value: object) -> object:
    """JSON has no NaN: an undefined number (e.g. accuracy of zero pseudo-labels) becomes null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: str | Path, data: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=2) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """A table for people and plots (`plots/*.csv`), written atomically."""
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False)


def read_json(path: str | Path) -> object:
    return json.loads(Path(path).read_text())


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """A float32 matrix as an Arrow fixed-size-list column (one row per vector)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def write_table(path: str | Path, frame: pd.DataFrame, embeddings: np.ndarray | None = None,
                metadata: dict[str, str] | None = None) -> None:
    """Write `frame` (plus an `embedding` column from `embeddings`) as Parquet, atomically."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    if embeddings is not None:
        if len(embeddings) != len(frame):
            raise ValueError(f"{len(embeddings)} embeddings for {len(frame)} rows")
        table = table.append_column("embedding", embedding_array(embeddings))
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({key.encode(): str(value).encode() for key, value in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path, columns: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Read a Parquet table; the `embedding` column comes back as a float32 matrix."""
    table = pq.read_table(path, columns=columns)
    embeddings = None
    if "embedding" in table.column_names:
        column = table.column("embedding").combine_chunks()
        width = column.type.list_size
        embeddings = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
        table = table.drop(["embedding"])
    return table.to_pandas(), embeddings


def save_tensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """safetensors, atomically, byte-for-byte reproducible: safetensors orders several metadata keys
    at random, so the metadata travels as one sorted-JSON value under the key `pipeline`."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"pipeline": json.dumps(metadata, sort_keys=True)})


def load_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = json.loads((handle.metadata() or {}).get("pipeline", "{}"))
    return tensors, metadata


def table_metadata(path: str | Path) -> dict[str, str]:
    raw = pq.read_schema(path).metadata or {}
    return {key.decode(): value.decode() for key, value in raw.items() if not key.startswith(b"pandas")}
