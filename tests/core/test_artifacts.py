import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.artifacts import load_tensors, read_json, read_table, save_tensors, table_metadata, write_json, write_table


def test_table_round_trip_with_fixed_size_embeddings(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 1]})
    vectors = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    write_table(tmp_path / "t.parquet", frame, vectors, {"arch": "tiny-clip"})
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert schema.field("embedding").type == pa.list_(pa.float32(), 5)
    back, embeddings = read_table(tmp_path / "t.parquet")
    assert back.equals(frame) and np.array_equal(embeddings, vectors)
    assert table_metadata(tmp_path / "t.parquet") == {"arch": "tiny-clip"}


def test_tensors_are_byte_reproducible(tmp_path):
    tensors = {"ctx": np.arange(6, dtype=np.float32).reshape(2, 3), "w": np.ones((2, 2), np.float32)}
    metadata = {"method": "air", "arch": "tiny-clip", "pretrained": "random", "x": "1"}
    save_tensors(tmp_path / "a.safetensors", tensors, metadata)
    save_tensors(tmp_path / "b.safetensors", tensors, dict(reversed(list(metadata.items()))))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded, meta = load_tensors(tmp_path / "a.safetensors")
    assert meta == metadata and np.array_equal(loaded["ctx"], tensors["ctx"])


def test_json_has_no_nan(tmp_path):
    write_json(tmp_path / "m.json", {"accuracy": float("nan"), "rounds": [{"loss": float("nan")}], "n": 3})
    assert read_json(tmp_path / "m.json") == {"accuracy": None, "rounds": [{"loss": None}], "n": 3}
