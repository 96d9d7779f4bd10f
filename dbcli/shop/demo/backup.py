"""The demo's backup step: back up the demo data, verify the backup, and say where it is."""

from __future__ import annotations

from dbcli.backup.create import create
from dbcli.backup.listing import human_size
from dbcli.backup.verify import verify
from dbcli.config.model import Config
from dbcli.output import Output


def step(cfg: Config, out: Output) -> None:
    """Back up the demo data into ``<data dir>/backups`` and verify the backup."""
    root = cfg.data_dir / "backups"
    out.info(f"backup: creating a backup of the demo data in {root}")
    made = create(cfg, target="all", root=root, tag="demo", progress=out.info)
    out.info(f"backup: {made['id']}: {made['tables']} tables ({made['rows']} rows), "
             f"{made['collections']} collections ({made['documents']} documents), {human_size(made['size_bytes'])}")
    checked = verify(cfg, root=root, backup_id=made["id"], progress=out.info)
    out.rows([{"backup": made["id"], "check": c["check"], "subject": c["subject"], "ok": c["ok"]}
              for c in checked.checks], ["backup", "check", "subject", "ok"], title="backup verification")
    checked.raise_if_failed()
    out.info(f"backup: list them with: dbcli backup list --dir {root}")
