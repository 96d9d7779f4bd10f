"""MongoDB: connections with timeouts, the local MongoDB-wire server, documents (CRUD, import/export),
collection schemas and their validation, and the update simulator.
"""
