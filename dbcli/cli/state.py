"""Per-invocation state and the options every data-printing command shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbcli.cli import completion

if TYPE_CHECKING:
    from dbcli.config.model import Config
    from dbcli.output import Output

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="Output format: table, json, jsonl or csv "
                 "(default: table on a TTY, json otherwise; or $DBCLI_FORMAT).",
                 show_default=False, autocompletion=completion.formats),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success (for cron).")]


@dataclass
class AppState:
    config_path: str | None = None
    profile: str | None = None
    fmt: str | None = None
    quiet: bool = False
    debug: bool = False
    no_color: bool | None = None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from dbcli.config.load import load_config

            self._config = load_config(self.config_path, self.profile)
        return self._config

    def output(self, fmt: str | None = None, quiet: bool = False) -> Output:
        from dbcli.output import Output

        return Output(fmt=fmt or self.fmt, quiet=quiet or self.quiet, no_color=self.no_color)


def state(ctx: typer.Context) -> AppState:
    obj: Any = ctx.find_root().obj
    if not isinstance(obj, AppState):
        obj = AppState()
        ctx.find_root().obj = obj
    return obj
