"""``dbcli demo``: every capability once, on the embedded default, narrated on stderr.

``runner`` picks the servers and runs the steps in order; each step module (``seed``, ``tables``,
``orders``, ``documents``, ``activity``, ``reports``, ``backup``) exposes ``step(cfg, out)``.
"""
