"""``python -m canora`` = the ``canora`` command."""

from canora.cli import main

raise SystemExit(main())
