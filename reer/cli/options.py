"""Options that several commands share, declared once (typer reads the Annotated metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Text, not a Path: a DuckLake URL's conninfo must reach the store as written.
Db = Annotated[
    str | None,
    typer.Option(
        help="the store: a DuckDB file (default ./reer.duckdb, or REER_DB), "
        "or a shared DuckLake: ducklake:sqlite:PATH or ducklake:postgres:CONNINFO"
    ),
]
Out = Annotated[Path | None, typer.Option("--out", help="output folder: <out>/<run_id>/ (default ./reer-out)")]
Dtype = Annotated[str | None, typer.Option(help="bfloat16 (fast) or float32 (exact)")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")]
Port = Annotated[
    int | None, typer.Option(help="the Prefect server on 127.0.0.1:PORT (default: PREFECT_API_URL, else 4200)")
]
