"""dbcli encryption rotate | keygen"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="Encrypted columns and fields: key generation and rotation.", no_args_is_help=True)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows or documents per batch "
                          "(each batch is one transaction or one bulk write).")] = 500,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be re-encrypted; write nothing.")]
    = False,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Re-encrypt every configured column and field under encryption.key (idempotent, resumable).

    Put the new key in encryption.key (and its id in encryption.key_id), keep the old ones in
    encryption.previous_keys until a run reports nothing left to rotate.

    Example:
        dbcli encryption rotate --batch-size 1000
    """
    from dbcli.encryption import rotate as encryption_rotate

    st = state(ctx)
    out = st.output(fmt, quiet)
    counts = encryption_rotate.rotate(st.config, batch_size=batch_size, dry_run=dry_run)
    out.rows([c.as_row() for c in counts], encryption_rotate.COLUMNS)
    changed = sum(c.rotated + c.encrypted for c in counts)
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    out.info(f"{verb} {changed} value(s); {sum(c.current for c in counts)} already under the current key")


@app.command("keygen")
def keygen(ctx: typer.Context) -> None:
    """Print a new random 256-bit key, base64 encoded, for encryption.key.

    Example:
        export DBCLI_DATA_KEY=$(dbcli encryption keygen)
    """
    from dbcli.encryption.fields import generate_key

    print(generate_key())
