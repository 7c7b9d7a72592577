"""What the `gdeeper` commands share: the one-line error and the command line as recorded."""

from __future__ import annotations

import typer

_ARGV: list[str] | None = None  # set by main(): the command as typed


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"gdeeper: error: {message}", err=True)
    return typer.Exit(code)


def command_line(ctx: typer.Context) -> list[str]:
    if _ARGV is not None:
        return list(_ARGV)
    parts = ctx.command_path.split()
    for key, value in ctx.params.items():
        if value not in (None, False, [], ()):
            parts.append(f"--{key.replace('_', '-')}={value}")
    return parts
