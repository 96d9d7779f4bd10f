"""Deterministic sample data for the shop: ``load.seed`` streams the rows of ``users``, ``catalog`` and
``orders`` (built on ``rows``) into COPY, then the MongoDB activity ``events``; ``reset`` empties the
shop's tables and collections first for ``seed --reset``.
"""
