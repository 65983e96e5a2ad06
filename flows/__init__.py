"""Prefect flows: the entry points that deployments and the CLI call."""
