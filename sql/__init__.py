"""The DuckDB contract: schema, views and named queries as .sql files."""

from importlib.resources import files


def read_sql(name: str) -> str:
    """The text of sql/<name>.sql (e.g. 'schema', 'views', 'queries/run_summary')."""
    return files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
