"""A run directory as one verifiable archive: ``<run>.zip`` holding the run's files and a
``SHA256SUMS`` of them, plus ``<run>.zip.sha256`` for the archive itself.

Zip, not tar.gz: each member is compressed on its own, so one damaged byte is pinned to the
member it lives in (``SHA256SUMS`` or the member's CRC names it) instead of breaking the rest
of a compressed stream. Entries are sorted and carry a fixed time stamp and mode, so the same
run directory always gives the same archive bytes (and the same ``.sha256``).
"""
from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from nora.errors import ConfigError, RunFailedError

SUMS = "SHA256SUMS"
_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackageUsageError(ConfigError):
    """Bad input to ``nora package``: not a run directory, not an archive, unknown URL."""


class PackageCheckError(RunFailedError):
    """An archive (or its copy) does not match its checksums (exit 1, like a failed check)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_files(run_dir: Path) -> list[Path]:
    """The run's regular files, sorted; temporary files of an interrupted atomic write and
    symbolic links (which could point anywhere) are left out."""
    files = [p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()
             and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    return sorted(files, key=lambda p: p.relative_to(run_dir).as_posix())


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_archive(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Archive ``run_dir`` into ``out`` (default ``<run_dir>.zip`` beside it) and write
    ``<archive>.sha256``; returns the archive path. Written to a temporary name first, so
    a failure leaves no half archive."""
    rd = Path(run_dir)
    if not (rd / "manifest.json").is_file():
        raise PackageUsageError(f"RUN_DIR {str(rd)!r} is not a NORA run directory (no "
                                "manifest.json); expected a folder such as runs/<timestamp>")
    archive = Path(out) if out else rd.with_name(rd.name + ".zip")
    if archive.resolve().is_relative_to(rd.resolve()):
        raise PackageUsageError(f"--out {str(archive)!r} is inside the run directory it "
                                "archives; choose a path outside it")
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    sums = []
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for path in run_files(rd):
                rel = f"{rd.name}/{path.relative_to(rd).as_posix()}"
                data = path.read_bytes()
                sums.append(f"{sha256_bytes(data)}  {rel}")
                zf.writestr(_entry(rel), data)
            zf.writestr(_entry(f"{rd.name}/{SUMS}"), "\n".join(sums) + "\n")
        tmp.replace(archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    Path(f"{archive}.sha256").write_text(f"{sha256_file(archive)}  {archive.name}\n")
    return archive


@dataclass
class CheckResult:
    """What ``check_archive`` found; ``ok`` when every checksum matched."""

    archive: str
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_bytes(data: bytes, name: str, expected_sha256: str | None = None) -> CheckResult:
    """Check an archive's bytes: the whole against ``expected_sha256`` (its ``.sha256``,
    when there is one), each member against ``SHA256SUMS`` and its CRC; every damaged file
    is named."""
    result = CheckResult(name)
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        result.problems.append(f"{name}: sha256 {sha256_bytes(data)[:16]}... differs from "
                               f"its .sha256 ({expected_sha256[:16]}...)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        result.problems.append(f"{name}: not a readable zip archive ({exc})")
        return result
    with zf:
        sums_name = next((n for n in zf.namelist() if n.endswith(f"/{SUMS}")), None)
        if sums_name is None:
            result.problems.append(f"{name}: no {SUMS} inside; not a NORA package")
            return result
        try:
            listed = dict(reversed(line.split("  ", 1)) for line in
                          zf.read(sums_name).decode().splitlines() if line.strip())
        except (zipfile.BadZipFile, zlib.error, UnicodeDecodeError, ValueError) as exc:
            result.problems.append(f"{sums_name}: unreadable ({exc})")
            return result
        members = set(zf.namelist()) - {sums_name}
        for member in sorted(members | set(listed)):
            if member not in listed:
                result.problems.append(f"{member}: in the archive but not in {SUMS}")
                continue
            if member not in members:
                result.problems.append(f"{member}: listed in {SUMS} but missing")
                continue
            try:
                digest = sha256_bytes(zf.read(member))
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                result.problems.append(f"{member}: damaged ({exc})")
                continue
            if digest != listed[member]:
                result.problems.append(f"{member}: sha256 {digest[:16]}... does not match "
                                       f"{SUMS} ({listed[member][:16]}...)")
        result.files = len(members)
    return result
