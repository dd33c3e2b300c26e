import pytest

from tests.handlers.auth.helpers import Env


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)
