"""Which route arguments a service's initializer provides, read from its syntax tree.

The initializer's dict supplies route arguments, so a route's `model` need not be sent. Which
keys it holds is known for sure only once it ran on a worker; deploy reads them from the code: the
keys of the dict literals (or `dict(key=...)` calls) its `return` statements build. OpenAPI and
the console mark those arguments optional, "provided by the initializer"; the worker still checks
every call against what the initializer returned.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

Function = ast.FunctionDef | ast.AsyncFunctionDef


def returned_keys(fn: Function) -> frozenset[str]:
    """The string keys of the dicts `fn` returns, where its `return` statements spell them."""
    keys: set[str] = set()
    for node in _returns(fn.body):
        value = node.value
        if isinstance(value, ast.Dict):
            keys |= {k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict":
            keys |= {kw.arg for kw in value.keywords if kw.arg is not None}
    return frozenset(keys)


def _returns(body: list[ast.stmt]) -> Iterator[ast.Return]:
    """The function's own `return` statements (not those of functions or classes it defines)."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo += ast.iter_child_nodes(node)


def initializer_keys(init: Callable[..., Any] | None) -> frozenset[str]:
    """`returned_keys` of an imported initializer (nothing when its source cannot be read)."""
    if init is None:
        return frozenset()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    return frozenset() if fn is None else returned_keys(fn)
