"""One module per command group (or top-level command); each parses, calls one library function and
renders.
"""
