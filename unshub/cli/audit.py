"""``uns audit verify`` and ``uns audit export``: check and hand over the audit trail.

Exit codes (for cron jobs and CI gates): 0 the log verifies, 1 it is broken (the first broken
record and why are printed; ``export`` still writes its file, marked BROKEN), 2 it could not be
read at all (no such file, unreadable key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

audit_app = typer.Typer(name="audit", help="Verify and export the tamper-evident command audit trail.",
                        no_args_is_help=True)

_PUBLIC_KEY = typer.Option(None, "--public-key", help="trusted checkpoint key (audit-checkpoint.pub kept off-box)")
_WITNESS = typer.Option(None, "--witness", help="witness file of checkpoints (JSON lines) written by the log")


def _load_key(path: Path | None) -> Ed25519PublicKey | None:
    from uns.audit.keys import AuditKeyError, load_public_key

    if path is None:
        return None
    try:
        return load_public_key(path)
    except AuditKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@audit_app.command("verify")
def verify_command(
    path: Path = typer.Argument(..., help="the audit database (SQLite)"),
    public_key: Path | None = _PUBLIC_KEY,
    witness: Path | None = _WITNESS,
    as_json: bool = typer.Option(False, "--json", help="print the full report as JSON"),
) -> None:
    """Walk the chain from genesis; name the first broken record and why."""
    from uns.audit.chain import AuditError
    from uns.audit.verify import verify

    try:
        report = verify(path, public_key=_load_key(public_key), witness_path=witness)
    except AuditError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        typer.echo(report.summary())
        for finding in report.findings[1:]:
            typer.echo(f"  also: {finding.describe()}")
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("export")
def export_command(
    path: Path = typer.Argument(..., help="the audit database (SQLite)"),
    out: Path = typer.Option(..., "--out", help="file to write"),
    fmt: str = typer.Option("json", "--format", help="json or csv"),
    public_key: Path | None = _PUBLIC_KEY,
    witness: Path | None = _WITNESS,
) -> None:
    """Write every record and checkpoint with the verify verdict, for review."""
    from uns.audit.chain import AuditError
    from uns.audit.export import ExportFormat, export

    try:
        chosen = ExportFormat(fmt.lower())
    except ValueError:
        typer.echo(f"error: --format {fmt!r}: use json or csv", err=True)
        raise typer.Exit(2) from None
    try:
        report = export(path, out, chosen, public_key=_load_key(public_key), witness_path=witness)
    except (AuditError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out} ({report.records} records): {report.summary()}")
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
