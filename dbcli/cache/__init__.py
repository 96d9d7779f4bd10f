"""The result cache: entry keys and per-source versions, the disk and Redis backends behind one small
interface, and the API dbcli uses (``store``: note_write, ResultCache, stats, clear).
"""
