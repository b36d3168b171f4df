"""Content-addressed artifact files: written atomically, verified on load, kept inside the workspace.

A file's bytes live at ``.mldeck/artifacts/<sha[:2]>/<sha>``; the same content is stored once.
Writes go to a temporary file in the same folder, are fsynced, then renamed into place, so a crash
never leaves a partial file under a final name.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

from mldeck.errors import MldeckError, WorkspaceFull, disk_full

CHUNK = 1 << 20


class ArtifactError(MldeckError):
    """An artifact is missing, damaged or outside the workspace."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_file(folder: Path, mode: int) -> tuple[int, Path]:
    """A new hidden temporary file in *folder*, opened for writing, with *mode* as the umask
    narrows it (as any file the user writes): mkstemp's 0600 left a team sharing a workspace
    unable to read the datasets and models another member stored."""
    while True:
        tmp = folder / f".incoming-{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def put_stream(
    artifacts_dir: Path, stream: BinaryIO, suffix: str = "", mode: int = 0o666
) -> tuple[str, Path, int]:
    """Store the bytes of *stream* (named by their sha256 plus *suffix*), with *mode* as the
    umask narrows it; return (sha256, absolute path, size)."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = _new_file(artifacts_dir, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        final = artifacts_dir / sha[:2] / f"{sha}{suffix}"
        final.parent.mkdir(exist_ok=True)
        if final.exists() and final.stat().st_size == size:
            tmp.unlink()
        else:
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        return sha, final, size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def put_file(artifacts_dir: Path, source: Path, suffix: str = "") -> tuple[str, Path, int]:
    """Store a copy of the file *source*, no more readable than it is; return (sha256,
    absolute path, size)."""
    try:
        with open(source, "rb") as stream:
            mode = stat.S_IMODE(os.fstat(stream.fileno()).st_mode) & 0o666
            return put_stream(artifacts_dir, stream, suffix, mode)
    except FileNotFoundError:
        raise ArtifactError(f"cannot store {source}: no such file") from None
    except IsADirectoryError:
        raise ArtifactError(f"cannot store {source}: it is a folder, not a file") from None
    except PermissionError:
        raise ArtifactError(f"cannot store {source}: permission denied") from None
    except OSError as exc:
        if disk_full(exc):
            raise WorkspaceFull(
                f"cannot store {source}: the workspace's disk is full; free room and try again"
            ) from None
        raise


def resolve(root: Path, relative: str) -> Path:
    """The absolute path of a stored artifact path, refusing any path that leaves *root*."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise ArtifactError(f"artifact path {relative!r} points outside the workspace")
    return candidate


def file_sha256(path: Path) -> str:
    """The sha256 of the file at *path* (OSError when it cannot be read)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def verify(path: Path, sha256: str) -> None:
    """Raise ArtifactError unless the file at *path* has exactly the content *sha256*."""
    try:
        found = file_sha256(path)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc.strerror or exc}") from None
    if found != sha256:
        raise ArtifactError(
            f"artifact {path} does not match its recorded sha256 (expected {sha256[:12]}..., "
            f"found {found[:12]}...): it was modified or truncated"
        )
