"""MongoDB: connections with timeouts, the local MongoDB-wire server, documents (CRUD, import/export),
ad-hoc aggregations and distinct values, collection schemas and their validation, and the update simulator.
"""
