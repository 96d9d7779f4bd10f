"""Reports: report files and their typed parameters, the PostgreSQL and MongoDB runners, post-
processing, explain, charts, and the built-in report files.
"""
