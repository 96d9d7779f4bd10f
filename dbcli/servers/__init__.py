"""The profile's servers as a whole: ``health`` (ping, wait: is each answering, how fast) and ``local``
(status and stop of the embedded PostgreSQL and a local MongoDB-wire server).
"""
