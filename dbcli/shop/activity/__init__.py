"""User activity in MongoDB for the sample shop: events, per-user counters, hourly buckets, written
exactly once through a journal.

``model`` (event fields, ids, documents) <- ``session`` (connection, validation, encryption) <-
``journal``, ``buckets`` <- ``recompute`` (crash recovery, rebuild) <- ``writer`` <- ``record``,
``ingest`` (which check the PostgreSQL ``users`` through ``users``); ``stats`` reads.
"""
