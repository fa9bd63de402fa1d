"""`python -m mlkube_operator`: the operator process (same as `mlkube operator`)."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
