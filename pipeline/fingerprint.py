"""Fingerprints of the inputs that live outside the repository, so DVC re-runs what they feed.

DVC hashes only the files `dvc.yaml` names; a `folder` dataset, a torchvision root, a local generator
folder or CLIP checkpoint sit elsewhere, and replacing one would leave `dvc repro` "up to date". The
`check` stage (always run, and cheap) writes one small JSON per input kind; `prepare`, `adapt`,
`generate` and `features` depend on those files, whose bytes change only when an input does.

What is detected: for a dataset root, any file added, removed, renamed, resized or re-written (its
modification time in nanoseconds), without reading image bytes, so 100k files cost one directory walk;
for local weights, their content (SHA-256), hashed again only when a file's size, mtime or inode
changes (the hashes are remembered in `.cache/fingerprints.json`). Not detected: a dataset file edited
in place with its size and mtime forced back (e.g. `touch -d`), and a new revision of a hub model or an
open_clip tag behind an unchanged name (pin a revision or use a local copy for that).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pipeline.artifacts import file_digest, write_json
from pipeline.params import Params

HASH_CACHE = Path(".cache/fingerprints.json")


def _walk(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under `root`, sorted; hidden entries skipped.
    Plain strings and `os.scandir`: on 100k files pathlib's per-entry objects would double the cost."""
    entries, stack, cut = [], [str(root)], len(str(root)) + 1
    while stack:
        with os.scandir(stack.pop()) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    stat = entry.stat()
                    entries.append((entry.path[cut:], stat.st_size, stat.st_mtime_ns))
    entries.sort()
    return entries


def folder_listing(root: str | Path) -> dict:
    """Count, bytes and a digest of the (path, size, mtime) listing of every file under `root`."""
    entries = _walk(Path(root))
    text = "".join(f"{path}\0{size}\0{mtime}\n" for path, size, mtime in entries)
    return {"files": len(entries), "bytes": sum(size for _, size, _ in entries),
            "listing_sha256": hashlib.sha256(text.encode()).hexdigest()}


class _ContentHashes:
    """SHA-256 of local files, remembered by (size, mtime_ns, inode) so a warm run reads no weights."""

    def __init__(self, path: Path = HASH_CACHE):
        self.path = path
        try:
            self.known = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    def __call__(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        known = self.known.get(key)
        if known and known["stamp"] == stamp:
            return known["sha256"]
        sha256 = file_digest(file).hexdigest()
        self.known[key] = {"stamp": stamp, "sha256": sha256}
        self.changed = True
        return sha256

    def save(self) -> None:
        if self.changed:
            write_json(self.path, self.known)


def weights_fingerprint(location: str, hashes: _ContentHashes) -> dict:
    """A local file or folder: the content hash of each file; anything else (a hub id, an open_clip tag,
    `random`, a built-in tiny model) is identified by its name, which `params.yaml` already tracks."""
    path = Path(location).expanduser()
    if path.is_file():
        return {"location": location, "sha256": hashes(path)}
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        return {"location": location, "files": {p.relative_to(path).as_posix(): hashes(p) for p in files}}
    return {"location": location, "local": False}


def dataset_fingerprint(params: Params, hashes: _ContentHashes) -> dict:
    """The demo world is rendered from params alone; a folder or torchvision root is listed. The user's
    files beside it (class names, candidate sets) are hashed."""
    dataset = params.dataset
    fingerprint: dict = {"name": dataset.name}
    if dataset.name != "demo":
        root = Path(dataset.root).expanduser()
        fingerprint.update(root=dataset.root, listing=folder_listing(root) if root.is_dir() else None)
    for key, location in (("class_names_file", dataset.class_names_file),
                          ("candidates_file", params.paradigm_options.candidates_file)):
        if location and Path(location).is_file():
            fingerprint[key] = hashes(Path(location))
    return fingerprint


def training_fingerprint(params: Params, hashes: _ContentHashes) -> dict:
    """Files only training reads, named by a param (CoFT+'s class descriptions): their content hash."""
    location = params.coft.descriptions_file
    if location and Path(location).is_file():
        return {"descriptions_file": location, "sha256": hashes(Path(location))}
    return {"descriptions_file": location}


def write_fingerprints(params: Params, out_dir: Path) -> dict[str, dict]:
    """`dataset.json`, `clip.json`, `generator.json` and `training.json` under `out_dir`; returns what
    was written."""
    hashes = _ContentHashes()
    fingerprints = {
        "dataset": dataset_fingerprint(params, hashes),
        "clip": weights_fingerprint(params.clip.pretrained, hashes),
        "generator": weights_fingerprint(params.generate.model, hashes) if params.reads_synthetic_images
        else {"unused": True},  # the same for every such method, so switching among them re-runs nothing
        "training": training_fingerprint(params, hashes),
    }
    for name, fingerprint in fingerprints.items():
        write_json(out_dir / f"{name}.json", fingerprint)
    hashes.save()
    return fingerprints
