"""Fingerprints of the inputs that live outside the repository, so DVC re-runs what they feed.

DVC hashes only the files `dvc.yaml` names; a `folder` dataset, a torchvision root, a local generator
folder or CLIP checkpoint sit elsewhere, and replacing one would leave `dvc repro` "up to date". The
`check` stage (always run, and cheap) writes one small JSON per input kind; `prepare`, `adapt`,
`generate` and `features` depend on those files, whose bytes change only when an input does.

What is detected: for a dataset root, any file added, removed, renamed, resized or re-written (its
modification time in nanoseconds), without reading image bytes, so 100k files cost one directory walk
(symlinked folders are followed; one that leads back to a folder above it is refused, as the folder
source refuses it); for local weights, their content (SHA-256), hashed again only when a file's size,
mtime or inode changes (the hashes are remembered in `.cache/fingerprints.json`); the small files a
param names (class names, candidate sets, class descriptions) are read and hashed on every run.
Not detected: a dataset file edited in place with its size and mtime forced back (e.g. `touch -d`),
and a new revision of a hub model or an open_clip tag behind an unchanged name (pin a revision or use
a local copy for that).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

from pipeline.config.params import Params
from pipeline.core.artifacts import file_digest, write_json
from pipeline.core.errors import PipelineError
from pipeline.core.inputs import UNUSED_GENERATOR
from pipeline.methods.base import registry
from pipeline.methods.catalog import build_method
from pipeline.methods.coft import CoFT

HASH_CACHE = Path(".cache/fingerprints.json")


def _walk(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under `root`, sorted; hidden entries skipped.
    Plain strings and `os.scandir`: on 100k files pathlib's per-entry objects would double the cost.
    Each pending folder carries the (device, inode) of the folders above it, so a symlink back up the
    tree is named instead of walked until the kernel's ELOOP."""
    entries, cut = [], len(str(root)) + 1
    stack = [(str(root), (_folder_id(os.stat(root)),))]
    while stack:
        folder, above = stack.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        here = _folder_id(entry.stat())
                        if here in above:
                            raise _loop(entry.path, f"links back to {os.path.realpath(entry.path)}, a folder above it")
                        stack.append((entry.path, above + (here,)))
                    elif entry.is_file():
                        stat = entry.stat()
                        entries.append((entry.path[cut:], stat.st_size, stat.st_mtime_ns))
        except PermissionError:
            raise PipelineError(f"cannot read the dataset folder {folder}: permission denied; make it readable "
                                f"(chmod -R u+rX {folder}) or point dataset.root elsewhere") from None
    entries.sort()
    return entries


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link to itself, or a chain of links that never ends
            raise _loop(entry.path, "is a symbolic link that never resolves") from None
        raise


def _loop(path: str, what: str) -> PipelineError:
    return PipelineError(f"dataset.root: {path} {what}, so the folder never ends; remove the link "
                         "or point it outside the dataset")


def _folder_id(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def folder_listing(root: str | Path) -> dict:
    """Count, bytes and a digest of the (path, size, mtime) listing of every file under `root`."""
    entries = _walk(Path(root))
    text = "".join(f"{path}\0{size}\0{mtime}\n" for path, size, mtime in entries)
    return {"files": len(entries), "bytes": sum(size for _, size, _ in entries),
            "listing_sha256": hashlib.sha256(text.encode()).hexdigest()}


class _ContentHashes:
    """SHA-256 of local weights, remembered by (size, mtime_ns, inode) so a warm run reads no weights."""

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


def _small_file(key: str, location: str) -> bytes:
    """The bytes of a small file a param names, read on every run: no stamp cache, so an in-place edit
    that keeps its size and mtime still changes the fingerprint."""
    try:
        return Path(location).read_bytes()
    except OSError as error:
        raise PipelineError(f"cannot read {key}={location!r}: {error.strerror}; make the file readable "
                            f"(chmod u+r {location}) or fix the path") from None


def dataset_fingerprint(params: Params) -> dict:
    """The demo world is rendered from params alone; a folder or torchvision root is listed. The user's
    files beside it (class names, candidate sets) are hashed."""
    dataset = params.dataset
    fingerprint: dict = {"name": dataset.name}
    if dataset.name != "demo":
        root = Path(dataset.root).expanduser()
        fingerprint.update(root=dataset.root, listing=folder_listing(root) if root.is_dir() else None)
    for section, name, location in (("dataset", "class_names_file", dataset.class_names_file),
                                    ("paradigm_options", "candidates_file", params.paradigm_options.candidates_file)):
        if location and Path(location).is_file():
            fingerprint[name] = hashlib.sha256(_small_file(f"{section}.{name}", location)).hexdigest()
    return fingerprint


def reads_descriptions(params: Params) -> bool:
    """Whether train reads `coft.descriptions_file`: only a CoFT-family method that puts the
    descriptions into its prompt (CoFT+ with a file) does; for any other the key is ignored."""
    method = build_method(params)
    return isinstance(method, CoFT) and method.uses_descriptions()


def _checked_descriptions(location: str) -> str:
    """SHA-256 of the descriptions file, after checking what can be checked before `prepare` names the
    classes: it exists, reads, and maps names to lists of non-empty strings."""
    key = f"coft.descriptions_file={location!r}"
    if not Path(location).is_file():
        raise PipelineError(f"{key} {'is not a file' if Path(location).exists() else 'does not exist'}; give a "
                            'JSON file {"class name": ["description", ...]} (docs/methods.md, "CoFT / CoFT+")')
    raw = _small_file("coft.descriptions_file", location)
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise PipelineError(f"{key} is not valid JSON ({error}); fix the file") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{key} must be a JSON object mapping each class name to a list of descriptions")
    bad = [name for name, phrases in data.items()
           if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases)]
    if bad:
        raise PipelineError(f"{key}: the descriptions of {bad[0]!r} must be a list of non-empty strings; fix the file")
    return hashlib.sha256(raw).hexdigest()


def training_fingerprint(params: Params) -> dict:
    """Files only training reads, named by a param (CoFT+'s class descriptions): checked and hashed
    when the method reads them, else only their name is recorded."""
    location = params.coft.descriptions_file
    if location and reads_descriptions(params):
        return {"descriptions_file": location, "sha256": _checked_descriptions(location)}
    return {"descriptions_file": location}


def write_fingerprints(params: Params, out_dir: Path) -> dict[str, dict]:
    """`dataset.json`, `clip.json`, `generator.json` and `training.json` under `out_dir`; returns what
    was written."""
    hashes = _ContentHashes()
    fingerprints = {
        "dataset": dataset_fingerprint(params),
        "clip": weights_fingerprint(params.clip.pretrained, hashes),
        "generator": weights_fingerprint(params.generate.model, hashes) if registry()[params.method].reads_synthetic_images
        else UNUSED_GENERATOR,  # the same for every such method, so switching among them re-runs nothing
        "training": training_fingerprint(params),
    }
    for name, fingerprint in fingerprints.items():
        write_json(out_dir / f"{name}.json", fingerprint)
    hashes.save()
    return fingerprints
