"""``nora package``: archive a run with checksums, copy it anywhere fsspec reaches (a local
folder, ``memory://`` in tests, ``s3://`` with s3fs installed), and check a copy.

The copy is verified by reading it back from the destination and hashing it, so a transfer
that silently truncated or altered the file is caught where it happened.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nora.packaging.archive import (SUMS, CheckResult, PackageCheckError, PackageUsageError,
                                    check_bytes, sha256_file, write_archive)

__all__ = ["SUMS", "CheckResult", "PackageCheckError", "PackageUsageError", "Packaged",
           "check_archive", "package_run"]


@dataclass(frozen=True)
class Packaged:
    """One packaged run: the local archive, its sha256, and the verified copy's URL."""

    archive: Path
    sha256: str
    files: int
    dest_url: str | None = None


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise PackageUsageError("--dest needs the fsspec package; install it with "
                                "pip install 'nora[package]'") from None
    try:
        return url_to_fs(url)
    except ValueError as exc:            # unknown protocol
        known = ", ".join(sorted(p for p in fsspec.available_protocols() if len(p) < 8)[:20])
        raise PackageUsageError(f"--dest {url!r}: {exc}; known protocols include {known}") \
            from None
    except ImportError as exc:           # known protocol, its package missing (s3fs, gcsfs)
        raise PackageUsageError(f"--dest {url!r} needs a filesystem package that is not "
                                f"installed: {exc}") from None


def _join(url: str, name: str) -> str:
    return f"{url.rstrip('/')}/{name}"


def package_run(run_dir: str | Path, *, dest: str | None = None,
                out: str | Path | None = None) -> Packaged:
    """Archive ``run_dir`` (see ``write_archive``); with ``dest`` (a folder URL) copy the
    archive and its ``.sha256`` there and verify the copy's checksum, raising
    ``PackageCheckError`` when it differs."""
    fs, root = _fs(dest) if dest is not None else (None, "")   # bad URL: fail before writing
    archive = write_archive(run_dir, out)
    digest = sha256_file(archive)
    files = check_bytes(archive.read_bytes(), archive.name, digest).files
    if fs is None or dest is None:
        return Packaged(archive, digest, files)
    target = _join(root, archive.name)
    fs.makedirs(root, exist_ok=True)
    fs.put_file(str(archive), target)
    fs.pipe_file(target + ".sha256", Path(f"{archive}.sha256").read_bytes())
    copy = check_bytes(fs.cat_file(target), _join(dest, archive.name), digest)
    if not copy.ok:
        raise PackageCheckError("the copy does not match the archive: "
                                + "; ".join(copy.problems))
    return Packaged(archive, digest, files, _join(dest, archive.name))


def check_archive(url: str | Path) -> CheckResult:
    """Check an archive (a path or an fsspec URL) against its ``.sha256`` when one lies
    beside it, and each member against ``SHA256SUMS``; the result names every bad file."""
    url = str(url)
    fs, path = _fs(url) if "://" in url else (None, url)
    if fs is None:
        p = Path(path)
        if not p.is_file():
            raise PackageUsageError(f"--check {url!r}: no such archive file")
        data = p.read_bytes()
        side = Path(f"{p}.sha256")
        sidecar = side.read_text() if side.is_file() else None
    else:
        if not fs.isfile(path):
            raise PackageUsageError(f"--check {url!r}: no such archive file")
        data = fs.cat_file(path)
        sidecar = fs.cat_file(path + ".sha256").decode() if fs.isfile(path + ".sha256") \
            else None
    expected = sidecar.split()[0] if sidecar and sidecar.split() else None
    return check_bytes(data, url, expected)
