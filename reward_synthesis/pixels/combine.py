"""``combine:`` expressions: how a pixel score and state-side reward terms make one reward.

``"vlm * speed * center * angle + collision"`` (VLM-RL's hierarchical driving reward) is parsed
once into a function over per-env arrays. The grammar is deliberately tiny — numbers, names,
``+ - * /``, unary minus, parentheses and ``min(a, b)``/``max(a, b)``/``clip(x, lo, hi)`` — and it
is never ``eval``-ed: the AST is walked into closures, so a task file cannot run code.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Combine", "CombineError", "compile_combine"]

_Fn = Callable[[Mapping[str, np.ndarray]], np.ndarray]

_BINOPS: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
}
_FUNCS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "min": (2, np.minimum), "max": (2, np.maximum), "clip": (3, np.clip),
}


class CombineError(ValueError):
    """A malformed expression or an unknown name; the message says what is allowed."""


@dataclass(frozen=True)
class Combine:
    expression: str
    names: frozenset[str]
    _fn: _Fn

    def __call__(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._fn(values), dtype=np.float64)


def compile_combine(expression: str, available: Iterable[str] | None) -> Combine:
    """Parse ``expression`` over ``available`` names (None: any name, a syntax-only check before
    the names are known); raise :class:`CombineError` naming the problem."""
    allowed = None if available is None else sorted(set(available))
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise CombineError(f"not an expression: {err.msg}") from None
    used: set[str] = set()

    def build(node: ast.AST) -> _Fn:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            c = float(node.value)
            return lambda v: np.float64(c)
        if isinstance(node, ast.Name):
            name = node.id
            if allowed is not None and name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise CombineError(f"unknown name {name!r}{hint}; available: {', '.join(allowed)}")
            used.add(name)
            return lambda v: v[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op, left, right = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda v: op(left(v), right(v))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = build(node.operand)
            return (lambda v: -inner(v)) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords:
            arity, fn = _FUNCS[node.func.id]
            if len(node.args) != arity:
                raise CombineError(f"{node.func.id}() takes {arity} arguments")
            args = [build(a) for a in node.args]
            return lambda v: fn(*(a(v) for a in args))
        raise CombineError(f"{ast.unparse(node)!r} is not allowed: use numbers, names, + - * /, "
                           f"parentheses, min(a, b), max(a, b), clip(x, lo, hi)")

    fn = build(tree.body)
    return Combine(expression, frozenset(used), fn)
