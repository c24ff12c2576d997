from collections.abc import Iterator

import pytest

from tests.openai_stub import ScriptedOpenAI, scripted_openai


@pytest.fixture
def judge_server() -> Iterator[ScriptedOpenAI]:
    with scripted_openai() as s:
        yield s
