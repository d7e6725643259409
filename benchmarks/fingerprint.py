"""Cost of the `check` stage's dataset fingerprint on a large folder dataset.

Builds a folder of N small files (100 classes, default 100,000 files of 1 KB) and times
`folder_listing` on it: cold (right after the kernel's dentry/inode caches were dropped, where allowed:
needs root and a writable /proc/sys/vm/drop_caches) and warm (the same walk again), plus the cost of
a re-walk after one file changed. Prints seconds and files per second.

    python benchmarks/fingerprint.py --files 100000 --root /tmp/fingerprint-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from pipeline.check.fingerprint import folder_listing


def build(root: Path, files: int, classes: int = 100, size: int = 1024) -> None:
    payload = os.urandom(size)
    for index in range(files):
        folder = root / f"class_{index % classes:03d}"
        if index < classes:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:07d}.jpg").write_bytes(payload)


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(root: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    listing = folder_listing(root)
    return time.perf_counter() - started, listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--root", type=Path, default=Path("/tmp/fingerprint-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    started = time.perf_counter()
    build(args.root, args.files)
    print(f"built {args.files} files in {time.perf_counter() - started:.1f} s under {args.root}")

    cold = drop_caches()
    seconds, listing = timed(args.root)
    print(f"{'cold' if cold else 'first (caches could not be dropped)'}: {seconds:.2f} s "
          f"({listing['files'] / seconds:,.0f} files/s)")
    seconds, again = timed(args.root)
    print(f"warm: {seconds:.2f} s ({again['files'] / seconds:,.0f} files/s); same digest: "
          f"{again['listing_sha256'] == listing['listing_sha256']}")
    (args.root / "class_000" / "0000000.jpg").write_bytes(b"changed")
    seconds, changed = timed(args.root)
    print(f"after one file changed: {seconds:.2f} s; digest changed: "
          f"{changed['listing_sha256'] != listing['listing_sha256']}")
    shutil.rmtree(args.root)


if __name__ == "__main__":
    main()
