import importlib.util
import os
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "examples")


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
