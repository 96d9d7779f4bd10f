"""User activity in MongoDB for the sample shop: events, per-user counters, hourly buckets, written
exactly once through a journal.
"""
