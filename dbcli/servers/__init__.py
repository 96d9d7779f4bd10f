"""The profile's servers as a whole: ``health`` (ping, wait: is each answering, how fast) and ``local``
(status and stop of the embedded PostgreSQL and a local MongoDB-wire server), and ``client_env``
(the variables that point psql, mongosh or a notebook at them).
"""
