"""``dbcli demo``: every capability once, on the embedded default, narrated on stderr."""
