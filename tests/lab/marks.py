"""``needs_lab``: skip a lab test, with the reason, where the namespace lab cannot be built."""

from __future__ import annotations

import pytest

from ha.lab import LabError, check_environment

try:
    check_environment()
    SKIP_REASON = ""
except LabError as exc:
    SKIP_REASON = f"lab tests: {exc}"

needs_lab = pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "ok")
