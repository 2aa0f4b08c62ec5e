"""The part of pytest's API the conformance suite uses, for running it under Pyodide.

A bare Pyodide has no pytest; `runner.py` puts this folder first on sys.path so
that `import pytest` in tests/conformance/ finds this module. Only what the suite
uses is here: `raises`, `skip`, `fixture`, `mark.parametrize/skipif/asyncio`,
`MonkeyPatch`, and the names used in annotations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any


class Skipped(Exception):
    """Raised by `skip()`; the runner reports the test as skipped with the reason."""


def skip(reason: str = "") -> Any:
    raise Skipped(reason)


class ExceptionInfo:
    def __init__(self) -> None:
        self.value: BaseException | None = None
        self.type: type[BaseException] | None = None

    def match(self, pattern: str) -> bool:
        assert re.search(pattern, str(self.value)), f"{pattern!r} not found in {self.value!s}"
        return True


class _Raises:
    def __init__(self, expected: Any, match: str | None) -> None:
        self.expected = expected
        self.pattern = match
        self.info = ExceptionInfo()

    def __enter__(self) -> ExceptionInfo:
        return self.info

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        if kind is None:
            raise AssertionError(f"DID NOT RAISE {self.expected}")
        if not issubclass(kind, self.expected):
            return False  # propagate the unexpected exception
        self.info.value, self.info.type = value, kind
        if self.pattern is not None and not re.search(self.pattern, str(value)):
            raise AssertionError(
                f"Regex pattern did not match.\n Regex: {self.pattern!r}\n Input: {str(value)!r}"
            )
        return True


def raises(expected: Any, *, match: str | None = None) -> _Raises:
    return _Raises(expected, match)


def fixture(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f._pytest_fixture = options  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


class _Mark:
    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def __call__(self, fn: Any) -> Any:
        if callable(fn):
            marks = getattr(fn, "_pytest_marks", [])
            fn._pytest_marks = [self, *marks]
        return fn


class _MarkFactory:
    def __getattr__(self, name: str) -> Callable[..., _Mark]:
        def make(*args: Any, **kwargs: Any) -> Any:
            if name != "asyncio" and len(args) == 1 and callable(args[0]) and not kwargs:
                return _Mark(name, (), {})(args[0])
            return _Mark(name, args, kwargs)

        return make

    @property
    def asyncio(self) -> _Mark:
        return _Mark("asyncio", (), {})


mark = _MarkFactory()


class MonkeyPatch:
    _missing = object()

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, target: Any, name: str, value: Any, raising: bool = True) -> None:
        old = getattr(target, name, self._missing)
        if old is self._missing and raising:
            raise AttributeError(name)
        setattr(target, name, value)
        if old is self._missing:
            self._undo.append(lambda: delattr(target, name))
        else:
            self._undo.append(lambda: setattr(target, name, old))

    def setenv(self, name: str, value: str) -> None:
        old = os.environ.get(name)
        os.environ[name] = value
        self._undo.append(lambda: _restore_env(name, old))

    def delenv(self, name: str, raising: bool = True) -> None:
        if name not in os.environ:
            if raising:
                raise KeyError(name)
            return
        old = os.environ.pop(name)
        self._undo.append(lambda: _restore_env(name, old))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class FixtureRequest:
    param: Any = None
