"""`python -m broker` is the same as the `inference-broker` command."""

from broker.cli import main

raise SystemExit(main())
