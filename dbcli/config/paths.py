"""Where dbcli keeps its files: the XDG config, data and cache homes, and per-profile data dirs."""

from __future__ import annotations

import os
import re
from pathlib import Path


def xdg(name: str, fallback: str) -> Path:
    """``$name``, else ``~/fallback`` (an empty variable counts as unset, as the XDG spec says)."""
    return Path(os.environ.get(name) or Path.home() / fallback)


def config_home() -> Path:
    return xdg("XDG_CONFIG_HOME", ".config") / "dbcli"


def data_home() -> Path:
    return xdg("XDG_DATA_HOME", ".local/share") / "dbcli"


def cache_home() -> Path:
    return xdg("XDG_CACHE_HOME", ".cache") / "dbcli"


def profile_data_dir(profile: str) -> Path:
    """``<data home>/<profile>``, the profile name made safe for a file name.

    A leading dot becomes ``_`` too: ``..`` must not name the data home's parent, and names
    starting with a dot are left to dbcli's own bookkeeping (``.servers``).
    """
    return data_home() / re.sub(r"^\.|[^A-Za-z0-9_.-]", "_", profile)


def servers_registry() -> Path:
    """Where dbcli notes each local server it starts (``servers.registry``): in the data home, next
    to the profiles' data, so that whoever sees the data sees the servers running on it."""
    return data_home() / ".servers"
