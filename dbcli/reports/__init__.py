"""Reports: the report file format and registry (built-in files + ``reports.dir``), typed parameters,
the PostgreSQL and MongoDB runners (each loads only its own driver), post-processing, results
through the result cache, explain, charts, and the built-in report files.
"""
