"""TensorFlow's start-up notices kept off the console.

Importing TensorFlow prints C++ notices ("oneDNN custom operations are on", absl's
"All log messages before absl::InitializeLog()") before its logging is set up, so
TF_CPP_MIN_LOG_LEVEL cannot hold them back. Installed by `pipeline/__init__.py`: the
first import of `tensorflow` in a process (by Keras, or directly) runs with stderr sent
to /dev/null; an error of that import is still raised, and later output is untouched.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Silenced(importlib.abc.Loader):
    def __init__(self, inner: Any):
        self.inner = inner

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with stderr_silenced():
            self.inner.exec_module(module)


class QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, its loader wrapped in stderr_silenced, then steps aside."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Silenced(spec.loader)
        return spec


def install() -> None:
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, QuietTensorFlow) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, QuietTensorFlow())
