"""What an up-to-date `dvc repro` costs when the pipeline holds 50k synthetic images.

Builds a throwaway git + DVC project whose `generate` stage writes N synthetic 32 px PNGs into
Parquet shards (as `pipeline.generation` does) and whose `features` stage reads them, runs it once,
then times the no-op `dvc repro` and `dvc status` (DVC re-hashes nothing whose size and mtime did
not change). With `--files` the same images are also written one file each, for contrast: the
per-file cost is what shards avoid.

    python benchmarks/noop_repro.py                 # 50,000 images in shards of 512
    python benchmarks/noop_repro.py --files         # ... and as 50,000 files
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WRITER = textwrap.dedent('''
    """Write {images} random 32 px PNGs, as Parquet shards of {shard} or as files."""
    import io, sys
    from pathlib import Path
    import numpy as np, pandas as pd
    from PIL import Image
    images, shard, as_files = {images}, {shard}, sys.argv[1] == "files"
    out = Path("data/synthetic"); out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    def png():
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()
    for start in range(0, images, shard):
        rows = [png() for _ in range(start, min(images, start + shard))]
        if as_files:
            for offset, data in enumerate(rows):
                (out / f"syn-{{start + offset:06d}}.png").write_bytes(data)
        else:
            pd.DataFrame({{"id": range(start, start + len(rows)), "image": rows}}).to_parquet(
                out / f"shard-{{start // shard:05d}}.parquet")
''')

DVC_YAML = textwrap.dedent('''
    stages:
      generate:
        cmd: python writer.py {layout}
        deps: [writer.py]
        outs: [data/synthetic]
      features:
        cmd: python -c "import os; open('count.txt', 'w').write(str(len(os.listdir('data/synthetic'))))"
        deps: [data/synthetic]
        outs: [count.txt]
''')


def timed(args: list[str], cwd: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def project(root: Path, layout: str, images: int, shard: int) -> dict[str, float]:
    root.mkdir(parents=True)
    (root / "writer.py").write_text(WRITER.format(images=images, shard=shard))
    (root / "dvc.yaml").write_text(DVC_YAML.format(layout=layout))
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "b@example.invalid"],
                    ["git", "config", "user.name", "b"], ["dvc", "init", "-q"]):
        timed(command, root)
    result = {"first repro": timed(["dvc", "repro", "-q"], root)}
    noop = [timed(["dvc", "repro", "-q"], root) for _ in range(3)]
    status = [timed(["dvc", "status", "-q"], root) for _ in range(3)]
    result.update({"no-op repro": min(noop), "status": min(status)})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--shard-size", type=int, default=512)
    parser.add_argument("--files", action="store_true", help="also time the one-file-per-image layout")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="noop-repro-"))
    try:
        layouts = ["shards"] + (["files"] if args.files else [])
        results = {layout: project(scratch / layout, layout, args.images, args.shard_size) for layout in layouts}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.images} synthetic images (32 px PNG), DVC {subprocess.run(['dvc', '--version'], capture_output=True, text=True).stdout.strip()}")
    for layout, result in results.items():
        unit = f"shards of {args.shard_size}" if layout == "shards" else "one file each"
        print(f"  {unit:<16} " + "  ".join(f"{name} {seconds:6.2f} s" for name, seconds in result.items()))
    if "files" in results:
        print(f"no-op repro, files / shards: {results['files']['no-op repro'] / results['shards']['no-op repro']:.1f}x")


if __name__ == "__main__":
    main()
