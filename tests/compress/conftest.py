"""Compress tests run torch on one thread: the models are tiny, and two threads on a shared
two-core machine spend most of their time waiting for each other."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
