"""dbcli config show | check"""

from __future__ import annotations

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Print the effective configuration, every secret shown as ***.

    First the profile in force, the config file it comes from and its data dir (also said on
    stderr), then every section with its defaults.

    Example:
        dbcli --profile prod config show --format json
    """
    from dbcli.config.redact import effective

    st = state(ctx)
    cfg = st.config
    out = st.output(fmt, quiet)
    data = effective(cfg)
    origin = f"from {cfg.source}" if cfg.source else "(built-in: no config file)"
    out.info(f"profile {cfg.profile} {origin}, data dir {cfg.data_dir}")
    if out.fmt == "table":
        out.rows(_flatten(data), ["key", "value"], title=f"profile {cfg.profile}")
    else:
        out.record(data)


@app.command("check")
def check(ctx: typer.Context, fmt: FormatOpt = None, quiet: QuietOpt = False) -> None:
    """Validate the configuration, then connect to every configured server (exit 4 if one is down).

    Example:
        dbcli config check
    """
    from dbcli.errors import UnreachableError
    from dbcli.servers import health

    st = state(ctx)
    cfg = st.config
    out = st.output(fmt, quiet)
    out.info(f"configuration ok: profile {cfg.profile} from {cfg.source or 'built-in defaults'}")
    results = health.ping_all(cfg)
    out.rows([p.as_row() for p in results], ["server", "status", "version", "rtt_ms", "target", "error"])
    down = [p for p in results if p.status != "ok"]
    if down:
        raise UnreachableError(f"{down[0].server} is unreachable: {down[0].error}")


def _flatten(data: dict, prefix: str = "") -> list[dict]:
    rows: list[dict] = []
    for k, v in data.items():
        if isinstance(v, dict) and v:
            rows.extend(_flatten(v, f"{prefix}{k}."))
        else:
            rows.append({"key": f"{prefix}{k}", "value": v})
    return rows
