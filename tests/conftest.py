"""Shared fixtures: repository paths and the real-data location (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"
REAL_REACHING = REAL_DATA / "imperial_reaching_20ms.npz"
REAL_S1_MAT = REAL_DATA / "s1_reaching_v5.mat"


@pytest.fixture
def real_reaching_path() -> Path:
    """Path to the real reaching recording; skips the test when ../shared is absent."""
    if not REAL_REACHING.is_file():
        pytest.skip(f"real recording absent: {REAL_REACHING} (only on project machines)")
    return REAL_REACHING


@pytest.fixture
def real_s1_mat_path() -> Path:
    """Path to the real 50 ms MATLAB v5 recording; skips the test when ../shared is absent."""
    if not REAL_S1_MAT.is_file():
        pytest.skip(f"real recording absent: {REAL_S1_MAT} (only on project machines)")
    return REAL_S1_MAT


@pytest.fixture(scope="module", autouse=True)
def _families_per_module():
    """Rows a test module adds to the family table (a user's class registered by a run in this
    process) are dropped when the module ends, so no module sees another's classes."""
    from cortexedge.families import FAMILIES

    saved = dict(FAMILIES)
    yield
    FAMILIES.clear()
    FAMILIES.update(saved)


@pytest.fixture
def family_table():
    """The family table, restored after the test: rows it adds do not leak into other tests."""
    from cortexedge.families import FAMILIES

    saved = dict(FAMILIES)
    yield FAMILIES
    FAMILIES.clear()
    FAMILIES.update(saved)
