"""`python -m reer.cli`: the `reer` command."""

from reer.cli import main

main()
