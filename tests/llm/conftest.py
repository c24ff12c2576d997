"""Fixtures for the LLM layer: a tiny GPT-2 built offline, a git project, registration helpers."""

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import git
from tether.llm.flavor import PROMPT_SCHEMA

pytest.importorskip("torch", reason="the llm extra (torch, transformers) is not installed")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tether.llm.tiny import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny") / "gpt2")


@pytest.fixture
def llm_code(tmp_path: Path) -> Path:
    root = tmp_path / "assistant"
    root.mkdir()
    (root / "prompts.md").write_text("# the support assistant\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "assistant")
    return root


PROMPTS = pd.DataFrame({"prompt": ["How do I reset my password?", "How do I cancel the refund?"]})


def register_llm(reg, name, code, weights, spec, **kw):
    return reg.register(
        name,
        code=code,
        data=PROMPTS,
        weights=weights,
        flavor="llm",
        flavor_options={"spec": spec},
        input_schema=PROMPT_SCHEMA,
        **kw,
    )
