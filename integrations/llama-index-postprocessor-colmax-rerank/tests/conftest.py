"""Fixtures for the ColmaxRerank tests.

Unit tests use the repository's tiny random colbert-ai checkpoint (built in well under a second,
no download); ``tests/integration`` uses the real MiniLM weights and the shared Cranfield index
from the root ``conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # for tiny_models

from tiny_models import make_tiny_colbert_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a colbert-ai checkpoint (32 -> 16 projection, markers, [MASK])."""
    return make_tiny_colbert_model(tmp_path_factory.mktemp("tiny_colbert"))


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it is sent."""

    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if e.class_name() == name]


@pytest.fixture
def events() -> Iterator[EventCollector]:
    """Instrumentation events emitted during the test (a handler on the root dispatcher)."""
    collector = EventCollector()
    root = get_dispatcher()
    root.add_event_handler(collector)
    try:
        yield collector
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not collector]
