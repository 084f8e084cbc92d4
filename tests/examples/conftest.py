import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture
def load_example(monkeypatch):
    """Import ``examples/NAME.py`` as a module, the way ``python examples/NAME.py`` sees it
    (its folder first on ``sys.path``, so ``import _common`` resolves)."""
    monkeypatch.syspath_prepend(EXAMPLES)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"example_{name}", f"{EXAMPLES}/{name}.py")
        module = importlib.util.module_from_spec(spec)
        # dataclasses look their module up in sys.modules while a class is created.
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def run_example():
    """Run ``python examples/NAME.py ARGS...`` from the repository root, as a user would;
    returns the finished process with its text output."""

    def run(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        script = os.path.join(EXAMPLES, f"{name}.py")
        return subprocess.run(
            [sys.executable, script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    return run
