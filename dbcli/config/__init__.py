"""Configuration: the typed model of every section, finding and loading the YAML file with profiles and
${VAR} references, XDG paths, and redaction of secrets.
"""
