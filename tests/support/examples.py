"""How many examples a property test tries: its own number, or fewer where a run must be quick.

`INTAKE_HYPOTHESIS_EXAMPLES` (e.g. 20 in `make mutation`, where every surviving mutant pays for the whole
domain suite) caps every property test of the suite that asks here.
"""

from __future__ import annotations

import os


def examples(wanted: int) -> int:
    """`wanted`, capped by INTAKE_HYPOTHESIS_EXAMPLES when it is set."""
    cap = os.environ.get("INTAKE_HYPOTHESIS_EXAMPLES")
    return min(wanted, int(cap)) if cap else wanted
