"""Size limits on what a reward program can build, and module state frozen after loading.

The run-time guard (:mod:`reward_synthesis.safety.guard`) interrupts Python-level loops, but a single C
call (``sum(range(10**13))``, ``[0] * 10**10``, ``2 ** 10**9``) holds the interpreter until it
returns and cannot be interrupted in-process. So the operations whose cost in one C call is not
bounded by the sizes of their inputs are bounded here instead:

* ``range``, ``pow``, ``sum`` are replaced by checked versions in the program's builtins;
* ``a ** b``, ``a << b`` and ``a * b`` (and their ``**=``/``<<=``/``*=`` forms) are rewritten into
  calls of :func:`checked_pow`, :func:`checked_lshift`, :func:`checked_mul` before compiling: a
  sequence repeated, or an integer grown, past the limit raises instead of allocating;
* numpy constructors that take a size (``zeros``, ``arange``, ``tile``, ``outer``...) are wrapped
  to refuse more than :data:`MAX_ELEMENTS` elements.

With every container capped at ``MAX_ELEMENTS`` elements and every Python integer built by one
operation capped at ``MAX_INT_BITS`` bits, one C call works on bounded data. What stays possible:
a C operation on two capped operands whose cost is their product (broadcasting a ``(1000, 1)``
array against a ``(1, 1000)`` one, a matrix product of capped matrices) — at most seconds, and
the guard's hard timer (:mod:`reward_synthesis.safety.guard`) ends the process if even that wedges it.

After the module body ran, :func:`freeze_namespace` turns every module-level value into an
immutable one (lists -> tuples, dicts -> read-only mappings, arrays -> read-only copies, and the
same for function defaults and closures), so a call cannot depend on how many calls came before.
"""

from __future__ import annotations

import ast
import builtins
import math
import operator
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "MAX_ELEMENTS", "MAX_INT_BITS", "CHECKED_NAMES", "ModuleStateError", "checked_builtins",
    "checked_lshift", "checked_mul", "checked_pow", "freeze_namespace", "rewrite_operators",
    "wrap_numpy",
]

MAX_ELEMENTS = 1_000_000
MAX_INT_BITS = 4096

_SEQUENCES = (list, tuple, str, bytes)


def _too_big(what: str, n: int | str) -> ValueError:
    return ValueError(f"{what} would have {n} elements; a reward program may build at most "
                      f"{MAX_ELEMENTS:,} in one operation")


# -- operators ---------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return type(x) is int or type(x) is bool


def checked_pow(base: Any, exp: Any, mod: Any = None) -> Any:
    """``base ** exp``, refusing Python integers past :data:`MAX_INT_BITS` bits."""
    if mod is None:
        if _is_int(base) and _is_int(exp) and exp > 1 and abs(base) > 1 \
                and abs(base).bit_length() * exp > MAX_INT_BITS:
            raise OverflowError(f"integer power {base} ** {exp} is over the reward-program limit "
                                f"of {MAX_INT_BITS} bits")
        return base ** exp
    return builtins.pow(base, exp, mod)  # modular: the result is smaller than mod


def checked_lshift(value: Any, shift: Any) -> Any:
    if _is_int(value) and _is_int(shift) and value and shift + abs(value).bit_length() > MAX_INT_BITS:
        raise OverflowError(f"integer shift by {shift} bits is over the reward-program limit of "
                            f"{MAX_INT_BITS} bits")
    return value << shift


def checked_mul(a: Any, b: Any) -> Any:
    """``a * b``; a sequence repeated past the limit, or an integer product past the bit limit, raises.

    The common case (floats and arrays) costs two type checks.
    """
    ta, tb = type(a), type(b)
    if ta is float or tb is float or ta is np.ndarray or tb is np.ndarray:
        return a * b
    if isinstance(a, _SEQUENCES):
        _check_repeat(a, b)
    elif isinstance(b, _SEQUENCES):
        _check_repeat(b, a)
    if ta is int and tb is int and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise OverflowError(f"integer product is over the reward-program limit of {MAX_INT_BITS} bits")
    return a * b


def _check_repeat(sequence: Any, times: Any) -> None:
    try:
        n = operator.index(times)  # numpy integers repeat sequences too
    except TypeError:
        return
    if len(sequence) * n > MAX_ELEMENTS:
        raise _too_big(f"{type(sequence).__name__} * {n}", f"{len(sequence) * n:,}")


# The names the rewritten program calls; '__' names cannot be written by the program itself.
CHECKED_NAMES: Mapping[str, Callable[..., Any]] = types.MappingProxyType({
    "__checked_pow__": checked_pow, "__checked_lshift__": checked_lshift, "__checked_mul__": checked_mul,
})
_REWRITE = {ast.Pow: "__checked_pow__", ast.LShift: "__checked_lshift__", ast.Mult: "__checked_mul__"}


class _OperatorRewriter(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        name = _REWRITE.get(type(node.op))
        if name is None:
            return node
        call = ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], [])
        return ast.copy_location(call, node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        name = _REWRITE.get(type(node.op))
        if name is None or not isinstance(node.target, (ast.Name, ast.Subscript)):
            return node
        load = _as_load(node.target)
        call = ast.copy_location(ast.Call(ast.Name(name, ast.Load()), [load, node.value], []), node)
        return ast.copy_location(ast.Assign([node.target], call), node)


def _as_load(target: ast.expr) -> ast.expr:
    if isinstance(target, ast.Name):
        return ast.copy_location(ast.Name(target.id, ast.Load()), target)
    assert isinstance(target, ast.Subscript)
    return ast.copy_location(ast.Subscript(target.value, target.slice, ast.Load()), target)


def rewrite_operators(tree: ast.Module) -> ast.Module:
    """``a ** b`` -> ``__checked_pow__(a, b)`` etc.; line numbers are kept for error messages."""
    return ast.fix_missing_locations(_OperatorRewriter().visit(tree))


# -- builtins ----------------------------------------------------------------------------------


def _range(*args: Any) -> range:
    r = range(*args)
    try:
        n = f"{len(r):,}" if len(r) > MAX_ELEMENTS else ""
    except OverflowError:
        n = "more than 2**63"
    if n:
        raise _too_big(f"range({', '.join(map(str, args))})", n)
    return r


def _sum(iterable: Any, /, start: Any = 0) -> Any:
    if isinstance(start, _SEQUENCES):  # summing sequences copies quadratically in one C call
        raise TypeError("sum() of sequences is not allowed in a reward program; build the list "
                        "with a comprehension")
    return builtins.sum(iterable, start)


def checked_builtins() -> dict[str, Any]:
    return {"range": _range, "sum": _sum, "pow": checked_pow}


# -- numpy -------------------------------------------------------------------------------------


def _count(shape: Any) -> int:
    """Elements of an array of ``shape`` (an int or a sequence of ints), without allocating it."""
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    return math.prod(max(0, operator.index(d)) for d in dims)


def _capped(fn: Callable[..., Any], size: Callable[..., int]) -> Callable[..., Any]:
    name = getattr(fn, "__name__", "numpy function")

    def checked(*args: Any, **kwargs: Any) -> Any:
        n = size(*args, **kwargs)
        if n > MAX_ELEMENTS:
            raise _too_big(f"np.{name}", f"{n:,}")
        return fn(*args, **kwargs)

    checked.__name__ = name
    checked.__doc__ = fn.__doc__
    return checked


def _arange_size(*args: Any, **kwargs: Any) -> int:
    bounds = [a for a in args if not isinstance(a, (type, np.dtype, str))]
    start, stop, step = 0.0, None, 1.0
    if len(bounds) == 1:
        stop = bounds[0]
    elif len(bounds) >= 2:
        start, stop = bounds[0], bounds[1]
        step = bounds[2] if len(bounds) > 2 else kwargs.get("step", 1.0)
    start, stop = kwargs.get("start", start), kwargs.get("stop", stop)
    if stop is None or not step:
        return 0
    return max(0, math.ceil((float(stop) - float(start)) / float(step)))


def _reps_size(a: Any, reps: Any, *_: Any, **__: Any) -> int:
    return int(np.size(a)) * _count(reps)


def _repeat_size(a: Any, repeats: Any, *_: Any, **__: Any) -> int:
    counts = np.asarray(repeats)
    total = int(counts.sum()) if counts.ndim else int(counts) * int(np.size(a))
    return total


def _outer_size(a: Any, b: Any, *_: Any, **__: Any) -> int:
    return int(np.size(a)) * int(np.size(b))


_NUMPY_SIZES: dict[str, Callable[..., int]] = {
    "zeros": lambda shape, *_, **__: _count(shape),
    "ones": lambda shape, *_, **__: _count(shape),
    "full": lambda shape, *_, **__: _count(shape),
    "eye": lambda n, m=None, *_, **__: _count(n) * _count(n if m is None else m),
    "identity": lambda n, *_, **__: _count(n) ** 2,
    "linspace": lambda start, stop, num=50, *_, **__: _count(num),
    "arange": _arange_size,
    "tile": _reps_size,
    "repeat": _repeat_size,
    "outer": _outer_size,
    "kron": _outer_size,
}


def wrap_numpy(name: str, value: Any) -> Any:
    """The numpy attribute a program gets for ``np.<name>``: size-checked where it can allocate."""
    size = _NUMPY_SIZES.get(name)
    return value if size is None else _capped(value, size)


# -- module state ------------------------------------------------------------------------------


class ModuleStateError(TypeError):
    """A module-level value that could carry state from one call to the next."""


_READ_ONLY = ("module-level values of a reward program are read-only: a reward may not keep state "
              "between calls (compute it from state and action)")


def _refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError(_READ_ONLY)


class _FrozenList(list):
    """What a module-level list becomes: still a list (numpy indexes with it as with a list),
    but every mutator refuses. ``list.append(x, ...)`` cannot bypass it: the sandbox lets a
    program only call ``list`` (see ``sandbox._TYPE_NAMES``)."""

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse


class _FrozenDict(dict):
    """A module-level dict: reads as a dict, refuses every change."""

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = setdefault = pop = popitem = clear = _refuse


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, np.generic, np.dtype, type,
              types.BuiltinFunctionType, np.ufunc, np.finfo, types.ModuleType, slice, type(Ellipsis))


def freeze_namespace(namespace: dict[str, Any], *, allowed: Callable[[Any], bool]) -> None:
    """Make every module-level value immutable in place; raise :class:`ModuleStateError` for a
    value that cannot be (an iterator, a generator...). ``allowed(obj)`` accepts objects the
    sandbox itself put there (module views, checked builtins)."""
    memo: dict[int, Any] = {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        namespace[name] = _freeze(value, name, memo, allowed)


def _freeze(value: Any, where: str, memo: dict[int, Any], allowed: Callable[[Any], bool]) -> Any:
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, _IMMUTABLE) or allowed(value):
        return value
    if isinstance(value, np.ndarray):
        frozen = np.array(value)
        frozen.flags.writeable = False
        memo[key] = frozen
        return frozen
    if isinstance(value, (list, tuple)):
        items = [_freeze(v, f"{where}[{i}]", memo, allowed) for i, v in enumerate(value)]
        frozen = _FrozenList(items) if isinstance(value, list) else tuple(items)
    elif isinstance(value, dict):
        frozen = _FrozenDict({k: _freeze(v, f"{where}[{k!r}]", memo, allowed)
                              for k, v in value.items()})
    elif isinstance(value, (set, frozenset)):
        frozen = frozenset(_freeze(v, where, memo, allowed) for v in value)
    elif isinstance(value, types.MappingProxyType):
        frozen = value
    elif isinstance(value, types.FunctionType):
        memo[key] = value
        _freeze_function(value, where, memo, allowed)
        return value
    else:
        raise ModuleStateError(
            f"module-level value {where!r} is a {type(value).__name__}, which keeps state between "
            "calls; only numbers, strings, tuples/lists/dicts/sets of them, arrays and functions "
            "may live at module level (they are made read-only)")
    memo[key] = frozen
    return frozen


def _freeze_function(fn: types.FunctionType, where: str, memo: dict[int, Any],
                     allowed: Callable[[Any], bool]) -> None:
    """Defaults and closure cells are where a function can hide state (``def f(x, seen=[])``)."""
    if fn.__defaults__:
        fn.__defaults__ = tuple(_freeze(v, f"{where} default", memo, allowed) for v in fn.__defaults__)
    if fn.__kwdefaults__:
        fn.__kwdefaults__ = {k: _freeze(v, f"{where} default {k}", memo, allowed)
                             for k, v in fn.__kwdefaults__.items()}
    for cell in fn.__closure__ or ():
        try:
            cell.cell_contents = _freeze(cell.cell_contents, f"{where} closure", memo, allowed)
        except ValueError:  # an empty cell
            pass
