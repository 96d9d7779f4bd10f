"""The result cache: keys, per-table versions, and the Redis and file backends behind one interface."""
