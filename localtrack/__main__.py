"""python -m localtrack -> the CLI."""

from ._cli import main

raise SystemExit(main())
