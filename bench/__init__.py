"""reer's benchmarks; each module runs with `python -m bench.<name>`."""

import os
from pathlib import Path

# The real data beside the repository (../shared/data; see its PROVENANCE.md), or REER_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("REER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
