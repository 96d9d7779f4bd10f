"""dbcli: a command-line toolkit for PostgreSQL and MongoDB."""

__version__ = "0.1.0"
