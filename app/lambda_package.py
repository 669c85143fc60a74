"""``pulse lambda package`` (:data:`lambda_group`): the availability function's deployment zip, reproducible.

The zip holds ``lambda/availability/*.py`` (``handler.py`` at the root of the archive, as ``Handler:
handler.lambda_handler`` in ``lambda/template.yaml`` expects), in sorted order, each entry with the same fixed
timestamp (1980-01-01, the earliest a zip can store), mode 0644, deflate level 9 and no extra fields, so two
builds of the same sources are identical (same SHA-256) whoever builds them, wherever, whenever.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

from pulse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "lambda" / "availability"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MODE = 0o100644 << 16  # a regular file, rw-r--r--


@dataclass(frozen=True)
class Package:
    path: Path
    files: tuple[str, ...]
    size: int
    sha256: str


def build(output: Path, source: Path = SOURCE) -> Package:
    """Write the zip of ``source``'s ``*.py`` files to ``output``; ConfigError when there is nothing to pack."""
    files = sorted(p for p in source.glob("*.py") if p.is_file())
    if not any(p.name == "handler.py" for p in files):
        raise ConfigError(f"{source} has no handler.py: nothing to package")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for p in files:
            info = zipfile.ZipInfo(p.name, date_time=_EPOCH)
            info.external_attr = _MODE
            info.create_system = 3  # Unix, so the mode bits are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes(), compresslevel=9)
    tmp.replace(output)
    data = output.read_bytes()
    return Package(output, tuple(p.name for p in files), len(data), hashlib.sha256(data).hexdigest())


@click.group("lambda")
def lambda_group() -> None:
    """The Dukascopy availability Lambda (lambda/)."""


@lambda_group.command("package")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dist/availability.zip"),
    show_default=True,
    help="Where to write the zip.",
)
@click.option("--json", "as_json", is_flag=True)
def package(output: Path, as_json: bool) -> None:
    """Build the deployment zip reproducibly (fixed timestamps and order: the same sources give the same bytes)."""
    pkg = build(output)
    doc = {"path": str(pkg.path), "files": list(pkg.files), "bytes": pkg.size, "sha256": pkg.sha256}
    click.echo(json.dumps(doc) if as_json else f"{pkg.path}  {pkg.size} bytes  sha256 {pkg.sha256}")
