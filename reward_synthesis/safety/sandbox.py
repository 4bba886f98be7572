"""The reward-program sandbox: an AST allow-list, a restricted namespace, and an isolated run.

A reward program is untrusted Python (written by a user or an LLM) that defines
``compute_reward(state, action) -> float | tuple[float, dict[str, float]]``. Three layers:

1. :func:`static_check` — an AST *allow-list*: only listed syntax, only ``numpy``/``math``
   imports, only curated ``numpy`` attributes, no ``_``-names, no dangerous builtins, no
   introspection attributes (``gi_frame``, ``mro``, ``format``, ...), no ``while``.
2. :func:`load_program` — executes the checked code with ``__builtins__`` reduced to
   :data:`SAFE_BUILTINS` and an ``__import__`` that hands out read-only *views* of numpy and
   math holding only the allowed names, so a check that missed something still finds nothing.
3. :func:`run_isolated` — runs the program on sample states in a separate process with CPU,
   address-space and wall-clock limits: the AST cannot stop ``sum(range(10**12))``.

Layer 2 is what training uses in-process; it does not bound time or memory. Run
:func:`run_isolated` (or ``checks.preflight``) on real states before training with a program.

**Batched programs.** A file that defines ``compute_reward_batch(state, action)`` instead of
``compute_reward`` is a batched program (a file defines exactly one of the two; the name is the
declaration): every ``state.<field>`` is ``[N, *shape]`` with one row per env, ``action`` is
``[N, *action_shape]`` (``[N, 1]`` for a discrete action), and it returns totals ``[N]`` or
``(totals [N], {name: [N]})``, row ``i`` computed from row ``i`` alone (reduce with ``axis=-1``:
``np.linalg.norm(d, axis=-1)``, ``np.sum(np.square(action), axis=-1)``). The same allow-list,
namespace and limits apply; :func:`normalize_batch_output` checks its output, and
:func:`run_isolated` calls it once on all samples stacked and once on each sample alone, so the
pre-flight can check that envs do not mix.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reward_synthesis.safety.limits import (
    CHECKED_NAMES,
    checked_builtins,
    freeze_namespace,
    rewrite_operators,
    wrap_numpy,
)
from workbench.errors import RewardCodeRejected
from workbench.state import State

__all__ = [
    "ALLOWED_MATH",
    "ALLOWED_NUMPY",
    "ALLOWED_NUMPY_LINALG",
    "DENIED_ATTRIBUTES",
    "ERROR_KINDS",
    "MAX_SOURCE_BYTES",
    "SAFE_BUILTINS",
    "IsolatedResult",
    "Violation",
    "describe_exception",
    "BATCH_ENTRY_POINT",
    "ENTRY_POINT",
    "entry_point_of",
    "load_program",
    "normalize_batch_output",
    "normalize_output",
    "reward_action",
    "run_isolated",
    "state_inputs",
    "static_check",
]

MAX_SOURCE_BYTES = 64 * 1024
ENTRY_POINT = "compute_reward"
BATCH_ENTRY_POINT = "compute_reward_batch"  # the batched form: one call for N envs
_ENTRY_POINTS = (ENTRY_POINT, BATCH_ENTRY_POINT)

# --------------------------------------------------------------------------------------------
# The allow-lists
# --------------------------------------------------------------------------------------------

_SAFE_BUILTIN_NAMES = (
    "abs", "min", "max", "sum", "len", "range", "float", "int", "bool", "round", "enumerate",
    "zip", "list", "tuple", "dict", "set", "sorted", "reversed", "any", "all", "isinstance",
    "map", "filter", "pow", "divmod", "str", "repr",
    # Exceptions a reward may raise or catch; none of them reaches anything dangerous.
    "Exception", "ArithmeticError", "FloatingPointError", "ZeroDivisionError", "ValueError",
    "TypeError", "IndexError", "KeyError",
)
SAFE_BUILTINS: Mapping[str, Any] = types.MappingProxyType(
    {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
)

# Pure math only: nothing that reads or writes files, memory addresses or global numpy state.
ALLOWED_NUMPY: frozenset[str] = frozenset({
    # construction
    "array", "asarray", "zeros", "ones", "zeros_like", "ones_like", "full", "full_like",
    "arange", "linspace", "eye", "identity", "copy", "atleast_1d", "atleast_2d",
    # elementwise math
    "sqrt", "cbrt", "square", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
    "arcsinh", "arccosh", "arctanh", "hypot", "deg2rad", "rad2deg", "radians", "degrees",
    "abs", "absolute", "fabs", "sign", "heaviside", "power", "floor", "ceil", "round", "rint",
    "trunc", "clip", "minimum", "maximum", "fmin", "fmax", "add", "subtract", "multiply",
    "divide", "true_divide", "negative", "reciprocal", "mod", "fmod", "remainder", "sinc",
    "nan_to_num", "isfinite", "isnan", "isinf", "isclose", "allclose", "array_equal", "where",
    "logical_and", "logical_or", "logical_not", "logical_xor", "interp", "unwrap",
    # reductions
    "sum", "prod", "mean", "median", "average", "std", "var", "min", "max", "amin", "amax",
    "argmin", "argmax", "argsort", "sort", "any", "all", "count_nonzero", "cumsum", "cumprod",
    "diff", "percentile", "quantile", "trace",
    # linear algebra and shape
    # Not "einsum": np.einsum("i,j,k,l->", a, a, a, a) loops 10**12 times in C on 1000 numbers.
    "dot", "vdot", "inner", "outer", "cross", "matmul", "tensordot", "kron",
    "concatenate", "stack", "hstack", "vstack", "tile", "repeat", "ravel", "reshape",
    "squeeze", "expand_dims", "transpose", "flip", "roll", "linalg",
    # constants and types
    "pi", "e", "inf", "nan", "newaxis", "float32", "float64", "int32", "int64", "bool_",
    "finfo",
    # Not "ndarray": np.ndarray(shape, dtype=object, buffer=...) turns raw bytes into object
    # pointers.
})
ALLOWED_NUMPY_LINALG: frozenset[str] = frozenset({"norm"})
# Integer combinatorics on unbounded integers is one long C call (math.factorial(10**7)).
_SLOW_MATH = frozenset({"factorial", "comb", "perm", "prod", "lcm", "gcd"})
ALLOWED_MATH: frozenset[str] = frozenset(n for n in dir(math) if not n.startswith("_")) - _SLOW_MATH

# module key -> allowed attribute names; a value that is itself a key is a submodule.
_MODULES: dict[str, frozenset[str]] = {
    "numpy": ALLOWED_NUMPY,
    "numpy.linalg": ALLOWED_NUMPY_LINALG,
    "math": ALLOWED_MATH,
}

# Attribute names refused on *any* object, with the reason shown to the author.
_DENIED_GROUPS: dict[str, tuple[str, ...]] = {
    "str.format walks attributes of its arguments ('{0.__class__}')": ("format", "format_map"),
    "file I/O or raw memory access": (
        "tofile", "dump", "dumps", "ctypes", "data", "base", "load", "save", "savez",
        "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile", "frombuffer",
        "fromregex", "fromstring", "memmap", "DataSource", "ctypeslib", "lib", "testing",
        "f2py", "distutils", "open", "system", "popen",
    ),
    "it would make read-only arrays writable or reinterpret memory": (
        "setflags", "flags", "setfield", "getfield",
    ),
    "resize(refcheck=False) can free memory that views still point to": ("resize",),
    "ufunc.at writes in place into its first argument (return a new value instead)": ("at",),
    "it pads or repeats to any length in one call (np.repeat is size-checked)": (
        "repeat", "zfill", "ljust", "rjust", "center", "expandtabs",
    ),
    "it changes numpy's global state": (
        "set_printoptions", "seterr", "seterrcall", "setbufsize", "show_config", "show_runtime",
    ),
    "introspection can reach frames, code and builtins": (
        "mro", "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "gi_suspended",
        "cr_frame", "cr_code", "cr_await", "cr_origin", "cr_running", "cr_suspended",
        "ag_frame", "ag_code", "ag_await", "ag_running", "f_back", "f_builtins", "f_code",
        "f_globals", "f_locals", "f_lasti", "f_lineno", "f_trace", "f_trace_lines",
        "f_trace_opcodes", "tb_frame", "tb_next", "tb_lasti", "tb_lineno", "with_traceback",
    ),
}
DENIED_ATTRIBUTES: Mapping[str, str] = types.MappingProxyType(
    {name: why for why, names in _DENIED_GROUPS.items() for name in names}
)

# Syntax that is allowed; anything else is reported (see _FORBIDDEN_SYNTAX for the wording).
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Return, ast.Assign, ast.AugAssign,
    ast.AnnAssign, ast.For, ast.If, ast.Pass, ast.Break, ast.Continue, ast.Expr, ast.Import,
    ast.ImportFrom, ast.alias, ast.Try, ast.ExceptHandler, ast.Raise, ast.Assert, ast.Delete,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set, ast.List,
    ast.Tuple, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension,
    ast.Compare, ast.Call, ast.keyword, ast.Constant, ast.Attribute, ast.Subscript, ast.Slice,
    ast.Starred, ast.Name, ast.NamedExpr, ast.JoinedStr, ast.FormattedValue,
    ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)
_FORBIDDEN_SYNTAX: dict[str, str] = {
    "While": "'while' loops are not allowed (a state-dependent loop can hang training); "
             "use 'for i in range(n)'",
    "ClassDef": "'class' definitions are not allowed",
    "AsyncFunctionDef": "'async' code is not allowed",
    "AsyncFor": "'async' code is not allowed",
    "AsyncWith": "'async' code is not allowed",
    "Await": "'await' is not allowed",
    "With": "'with' statements are not allowed",
    "Global": "'global' statements are not allowed",
    "Nonlocal": "'nonlocal' statements are not allowed",
    "Yield": "'yield' (generator functions) is not allowed",
    "YieldFrom": "'yield from' (generator functions) is not allowed",
    "Match": "'match' statements are not allowed",
    "TryStar": "'except*' is not allowed",
}
# Builtin types whose unbound methods mutate (see _Checker.check_type_use).
_TYPE_NAMES = frozenset({"list", "dict", "set"})
# Parts of forbidden statements: the statement itself is reported, once.
_SILENT_NODES: tuple[type[ast.AST], ...] = (ast.withitem, ast.match_case, ast.pattern)
# Builtins worth a specific word when they show up (the rest are just "not defined").
_DANGEROUS_BUILTINS = frozenset(dir(builtins)) - frozenset(_SAFE_BUILTIN_NAMES)


# --------------------------------------------------------------------------------------------
# static_check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One reason a program is rejected; ``line`` and ``col`` are 1-based like a compiler's."""

    line: int
    col: int
    message: str
    filename: str = "<reward>"

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.col}: {self.message}"


def static_check(source: str, filename: str = "<reward>") -> list[Violation]:
    """Every allow-list violation in ``source``, sorted by position; ``[]`` means accepted.

    Never raises: unparsable, oversized or pathological input comes back as a violation.
    """
    try:
        return _static_check(source, filename)
    except (RecursionError, MemoryError):
        return [Violation(1, 1, "program is too deeply nested to check", filename)]


def _static_check(source: str, filename: str) -> list[Violation]:
    if not isinstance(source, str):
        return [Violation(1, 1, f"program must be text (str), got {type(source).__name__}",
                          filename)]
    size = len(source.encode("utf-8", errors="replace"))
    if size > MAX_SOURCE_BYTES:
        return [Violation(1, 1, f"program is {size} bytes; the limit is {MAX_SOURCE_BYTES}",
                          filename)]
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        return [Violation(err.lineno or 1, err.offset or 1, f"syntax error: {err.msg}", filename)]
    except (ValueError, OverflowError) as err:  # e.g. null bytes in the source
        return [Violation(1, 1, f"syntax error: {err}", filename)]
    checker = _Checker(filename)
    checker.run(tree)
    return sorted(set(checker.violations), key=lambda v: (v.line, v.col, v.message))


class _Checker:
    """Walks the tree iteratively (no recursion limit) and collects violations."""

    def __init__(self, filename: str):
        self.filename = filename
        self.violations: list[Violation] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        self.bound: set[str] = set()
        self.modules: dict[str, str] = {}  # local name -> module key in _MODULES

    def report(self, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 1) or 1
        col = (getattr(node, "col_offset", 0) or 0) + 1
        self.violations.append(Violation(line, col, message, self.filename))

    def run(self, tree: ast.Module) -> None:
        nodes = list(ast.walk(tree))
        for node in nodes:
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        for node in nodes:  # first pass: what the program binds
            self.collect_bindings(node)
        for node in nodes:
            self.check_node(node)
        self.check_entry_point(tree)

    # -- bindings ------------------------------------------------------------------------

    def collect_bindings(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bound.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            self.bound.add(node.name)
        elif isinstance(node, ast.arg):
            self.bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self.bound.add(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.bind_module(alias.asname, alias.name)
                else:  # `import numpy.linalg` binds `numpy`
                    self.bind_module(alias.name.split(".")[0], alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                local = alias.asname or alias.name
                if local == "*":
                    continue
                self.bound.add(local)
                qualified = f"{node.module}.{alias.name}"
                if node.level == 0 and qualified in _MODULES:
                    self.modules[local] = qualified

    def bind_module(self, local: str, module: str) -> None:
        self.bound.add(local)
        if module in _MODULES:
            self.modules[local] = module

    # -- per-node rules ------------------------------------------------------------------

    def check_node(self, node: ast.AST) -> None:
        if isinstance(node, _SILENT_NODES):
            return
        if not isinstance(node, _ALLOWED_NODES):
            name = type(node).__name__
            self.report(node, _FORBIDDEN_SYNTAX.get(name, f"'{name}' syntax is not allowed"))
            return
        if isinstance(node, ast.Name):
            self.check_name(node)
        elif isinstance(node, ast.Attribute):
            self.check_attribute(node)
        elif isinstance(node, ast.Import):
            self.check_import(node)
        elif isinstance(node, ast.ImportFrom):
            self.check_import_from(node)
        elif isinstance(node, ast.FunctionDef):
            self.check_identifier(node, node.name, "function name")
            if node.decorator_list:
                self.report(node.decorator_list[0], "decorators are not allowed")
        elif isinstance(node, ast.arg):
            self.check_identifier(node, node.arg, "parameter name")
        elif isinstance(node, ast.keyword) and node.arg is not None:
            self.check_identifier(node, node.arg, "keyword argument")
            if node.arg == "out":
                self.report(node, "'out=' is not allowed: it writes into an existing array "
                                  "(return a new value instead)")
        elif isinstance(node, ast.ExceptHandler):
            if node.type is None:
                self.report(node, "bare 'except:' is not allowed: it would swallow the guard's "
                                  "time limit; name the exception, e.g. 'except ValueError:'")
            if node.name:
                self.check_identifier(node, node.name, "exception name")
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Attribute):
                    self.report(target, f"'del' of attribute '.{target.attr}' is not allowed")
        elif isinstance(node, ast.comprehension) and node.is_async:
            self.report(node.target, "'async' comprehensions are not allowed")

    def check_identifier(self, node: ast.AST, name: str, what: str) -> None:
        if name.startswith("__"):
            self.report(node, f"{what} '{name}' is not allowed: names starting with '__' are "
                              "reserved")

    def check_name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("__"):
            self.report(node, f"name '{name}' is not allowed: names starting with '__' are "
                              "reserved")
            return
        if not isinstance(node.ctx, ast.Load):
            return
        if name in self.modules:
            self.check_module_use(node, name)
            return
        if name in _TYPE_NAMES and name not in self.bound:
            self.check_type_use(node, name)
            return
        if name in self.bound or name in SAFE_BUILTINS:
            return
        parent = self.parents.get(node)
        if name in _DANGEROUS_BUILTINS:
            if isinstance(parent, ast.Call) and parent.func is node:
                self.report(node, f"call to '{name}' is not allowed")
            else:
                self.report(node, f"use of builtin '{name}' is not allowed")
        else:
            self.report(node, f"name '{name}' is not defined (imports allowed: numpy, math)")

    def check_type_use(self, node: ast.Name, name: str) -> None:
        """``list``/``dict``/``set`` may be called or named in ``isinstance``; anything else
        (``list.append(frozen, x)``, an alias) would reach the unbound methods that change the
        read-only module-level values."""
        parent = self.parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node or self.in_annotation(node):
            return
        if isinstance(parent, ast.Tuple):
            parent = self.parents.get(parent)
        if (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                and parent.func.id == "isinstance" and len(parent.args) == 2
                and node in ast.walk(parent.args[1])):
            return
        self.report(node, f"'{name}' may only be called ({name}(...)) or named in isinstance(): "
                          "its methods would change read-only module-level values")

    def in_annotation(self, node: ast.AST) -> bool:
        """Is ``node`` part of a type hint (``x: list[float]``, ``-> dict``)? Hints are only stored."""
        child, parent = node, self.parents.get(node)
        while isinstance(parent, (ast.Subscript, ast.Tuple, ast.BinOp, ast.Attribute)):
            child, parent = parent, self.parents.get(parent)
        return (isinstance(parent, ast.arg) and parent.annotation is child
                or isinstance(parent, ast.FunctionDef) and parent.returns is child
                or isinstance(parent, ast.AnnAssign) and parent.annotation is child)

    def check_module_use(self, node: ast.expr, shown: str) -> None:
        """A module may only appear as ``mod.attr``; aliasing it would dodge the allow-list."""
        parent = self.parents.get(node)
        if not (isinstance(parent, ast.Attribute) and parent.value is node):
            self.report(node, f"module '{shown}' may only be used as '{shown}.<name>'")

    def check_attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("_"):
            self.report(node, f"attribute '.{attr}' is not allowed: names starting with '_' "
                              "are reserved")
            return
        if not isinstance(node.ctx, ast.Load):
            self.report(node, f"assigning or deleting attribute '.{attr}' is not allowed")
        module = self.module_of(node.value)
        if module is not None:
            shown = f"{_dotted(node.value)}.{attr}"
            if attr not in _MODULES[module]:
                self.report(node, f"'{shown}' is not allowed: {module} may be used for pure "
                                  f"math only (no I/O, no internals)")
            elif f"{module}.{attr}" in _MODULES:
                self.check_module_use(node, shown)
        elif attr in DENIED_ATTRIBUTES:
            self.report(node, f"attribute '.{attr}' is not allowed: {DENIED_ATTRIBUTES[attr]}")

    def module_of(self, expr: ast.expr) -> str | None:
        """The module key ``expr`` refers to (``np`` -> numpy, ``np.linalg`` -> numpy.linalg)."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name) or expr.id not in self.modules:
            return None
        key = self.modules[expr.id]
        for attr in reversed(parts):
            key = f"{key}.{attr}"
            if key not in _MODULES:
                return None
        return key

    def check_import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in _MODULES:
                self.report(node, f"import of '{alias.name}' is not allowed (allowed: numpy, "
                                  "numpy.linalg, math)")
            if alias.asname:
                self.check_identifier(node, alias.asname, "import alias")

    def check_import_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.report(node, "relative import is not allowed")
            return
        module = node.module or ""
        if module not in _MODULES:
            self.report(node, f"import from '{module}' is not allowed (allowed: numpy, "
                              "numpy.linalg, math)")
            return
        for alias in node.names:
            if alias.name == "*":
                self.report(node, f"'from {module} import *' is not allowed; import names "
                                  "explicitly")
            elif alias.name not in _MODULES[module]:
                self.report(node, f"'from {module} import {alias.name}' is not allowed: "
                                  f"{module} may be used for pure math only")
            if alias.asname:
                self.check_identifier(node, alias.asname, "import alias")

    def check_entry_point(self, tree: ast.Module) -> None:
        defined = _defined_entry_points(tree)
        if len(defined) > 1:
            self.report(tree, f"program defines both '{ENTRY_POINT}' and '{BATCH_ENTRY_POINT}'; define "
                              f"one: '{ENTRY_POINT}(state, action)' for one state, or "
                              f"'{BATCH_ENTRY_POINT}(state, action)' for a batch of N envs")
        elif not defined:
            self.report(tree, f"program must define '{ENTRY_POINT}(state, action)' at top level (or "
                              f"'{BATCH_ENTRY_POINT}(state, action)' for a batched program)")


def _defined_entry_points(tree: ast.Module) -> list[str]:
    """The entry-point names the module's top level defines (``def`` or assignment)."""
    found: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name in _ENTRY_POINTS:
            found.append(stmt.name)
        for target in stmt.targets if isinstance(stmt, ast.Assign) else []:
            if isinstance(target, ast.Name) and target.id in _ENTRY_POINTS:
                found.append(target.id)
    return sorted(set(found))


def entry_point_of(source: str) -> str:
    """The entry point a program defines: :data:`BATCH_ENTRY_POINT` for a batched program, else
    :data:`ENTRY_POINT` (also for unparsable source: the checks then say what is wrong)."""
    try:
        defined = _defined_entry_points(ast.parse(source))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return ENTRY_POINT
    return BATCH_ENTRY_POINT if defined == [BATCH_ENTRY_POINT] else ENTRY_POINT


def state_inputs(source: str) -> frozenset[str] | None:
    """The ``state.<field>`` names ``compute_reward`` (or ``compute_reward_batch``) reads, or
    None when it uses ``state`` in any other way (passes it on, subscripts it) and so may read
    anything.

    These are the program's declared inputs: the wrapper copies only these fields every step.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    entry = entry_point_of(source)
    fn = next((s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == entry), None)
    if fn is None or not fn.args.args:
        return None
    param = fn.args.args[0].arg
    parents = {child: node for node in ast.walk(fn) for child in ast.iter_child_nodes(node)}
    fields: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id == param:
            parent = parents.get(node)
            if not (isinstance(node.ctx, ast.Load) and isinstance(parent, ast.Attribute)
                    and parent.value is node):
                return None
            fields.add(parent.attr)
        elif isinstance(node, ast.arg) and node.arg == param and node is not fn.args.args[0]:
            return None  # shadowed by an inner function's parameter: be conservative
    return frozenset(fields)


def _dotted(expr: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    parts.append(expr.id if isinstance(expr, ast.Name) else "?")
    return ".".join(reversed(parts))


# --------------------------------------------------------------------------------------------
# load_program: the restricted namespace
# --------------------------------------------------------------------------------------------


def _module_view(key: str, real: types.ModuleType) -> types.ModuleType:
    """A stand-in module holding only the allowed names, so aliasing tricks find nothing else."""
    view = types.ModuleType(key)
    for name in _MODULES[key]:
        sub = f"{key}.{name}"
        if sub in _MODULES:
            setattr(view, name, _module_view(sub, getattr(real, name)))
        elif hasattr(real, name):
            value = getattr(real, name)
            setattr(view, name, wrap_numpy(name, value) if key == "numpy" else value)
    return view


_VIEWS: dict[str, types.ModuleType] = {"numpy": _module_view("numpy", np),
                                       "math": _module_view("math", math)}
_VIEWS["numpy.linalg"] = _VIEWS["numpy"].linalg


_NUMPY_INTERNALS = ("numpy._core.", "numpy.core.")


def _restricted_import(name: str, globals: Any = None, locals: Any = None,
                       fromlist: Sequence[str] | None = (), level: int = 0) -> types.ModuleType:
    """``__import__`` for reward programs: hands out the module views and nothing else.

    numpy's C code imports its own internals lazily through the calling frame's ``__import__``
    (``x.sum()`` -> ``numpy._core._methods``): an already loaded numpy module goes to numpy. The
    program itself cannot reach this path: ``import`` statements are checked statically and
    ``__import__`` is a reserved name.
    """
    if level == 0 and name.startswith(_NUMPY_INTERNALS) and name in sys.modules:
        return builtins.__import__(name, globals, locals, fromlist, level)
    if level != 0 or name not in _VIEWS:
        raise ImportError(f"import of {name!r} is not allowed in a reward program")
    if fromlist:
        return _VIEWS[name]
    return _VIEWS[name.split(".")[0]]  # `import numpy.linalg` binds the top package


def _namespace() -> dict[str, Any]:
    return {
        "__builtins__": {**SAFE_BUILTINS, **checked_builtins(), **CHECKED_NAMES,
                         "__import__": _restricted_import},
        "__name__": "reward_program",
    }


def _sandbox_objects() -> frozenset[int]:
    """ids of what the sandbox itself hands a program (module views' contents, builtins): a
    module-level name may hold these as they are."""
    objects = [*SAFE_BUILTINS.values(), *checked_builtins().values()]
    for view in _VIEWS.values():
        objects.extend(vars(view).values())
    return frozenset(map(id, objects))


_SANDBOX_OBJECTS = _sandbox_objects()


def load_program(source: str, *, filename: str = "<reward>",
                 batched: bool | None = False) -> Callable[[Any, Any], Any]:
    """Check, execute in a restricted namespace, and return the program's ``compute_reward``
    (``batched=True``: its ``compute_reward_batch``; ``None``: whichever it defines, see
    :func:`entry_point_of`).

    Raises :class:`RewardCodeRejected` for a violation, a missing or malformed entry point (a
    batched program where a single-state one is wanted, or the other way round), or an
    exception while the module body runs (the original exception is the ``__cause__``).
    Does not bound time or memory: see :func:`run_isolated`.
    """
    violations = static_check(source, filename)
    if violations:
        listing = "\n".join(f"  {v}" for v in violations)
        raise RewardCodeRejected(
            f"reward program {filename} rejected by the sandbox "
            f"({len(violations)} violation{'s' if len(violations) != 1 else ''}):\n{listing}"
        )
    namespace = _namespace()
    try:
        tree = rewrite_operators(ast.parse(source, filename=filename))
        code = compile(tree, filename, "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - the point of the sandbox: checked code, no builtins
        freeze_namespace(namespace, allowed=lambda obj: id(obj) in _SANDBOX_OBJECTS)
    except Exception as err:
        raise RewardCodeRejected(
            f"reward program {filename} failed while loading: "
            f"{describe_exception(err, filename, source)}"
        ) from err
    entry = entry_point_of(source) if batched is None else BATCH_ENTRY_POINT if batched else ENTRY_POINT
    return _entry_point(namespace, filename, entry)


def _entry_point(namespace: Mapping[str, Any], filename: str, entry: str) -> Callable[[Any, Any], Any]:
    other = BATCH_ENTRY_POINT if entry == ENTRY_POINT else ENTRY_POINT
    if other in namespace:
        what = ("a batched program (compute_reward_batch: state fields [N, ...]); a single-state "
                "compute_reward(state, action) is needed here") if other == BATCH_ENTRY_POINT else (
                "a single-state program; a batched compute_reward_batch(state, action) is needed here")
        raise RewardCodeRejected(f"reward program {filename} defines '{other}': {what}")
    fn = namespace.get(entry)
    if fn is None:
        raise RewardCodeRejected(f"reward program {filename} defines no '{entry}'")
    if not isinstance(fn, types.FunctionType):
        raise RewardCodeRejected(
            f"reward program {filename}: '{entry}' must be a function, "
            f"got {type(fn).__name__}"
        )
    params = list(inspect.signature(fn).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) != 2 or any(p.kind not in positional for p in params):
        raise RewardCodeRejected(
            f"reward program {filename}: '{entry}' must take exactly two positional "
            f"parameters (state, action); it takes {inspect.signature(fn)}"
        )
    return fn


def describe_exception(err: BaseException, filename: str, source: str) -> str:
    """``ZeroDivisionError: division by zero (reward.py:3: return 1 / x)`` — the deepest frame
    of the reward program, so the author sees their own line, not numpy's."""
    message = str(err)
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    if len(text) > 2000:
        text = text[:2000] + "..."
    lineno = None
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return text
    lines = source.splitlines()
    code = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f"{text} (at {filename}:{lineno}: {code})"


def reward_action(action: Any) -> np.ndarray:
    """The action as every reward call sees it, in the pre-flight and in training alike: a
    read-only float64 copy (a program must not be able to tell the two apart)."""
    copy = np.array(action, dtype=np.float64)
    copy.flags.writeable = False
    return copy


# --------------------------------------------------------------------------------------------
# normalize_output
# --------------------------------------------------------------------------------------------

_CONTRACT = ("compute_reward must return a number, or a tuple (total, components) with "
             "components a dict[str, float]")
MAX_COMPONENTS = 64
MAX_COMPONENT_NAME = 64


def _as_float(value: Any, what: str) -> float:
    if type(value) is float:  # the common case, checked first: this runs every env step
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_CONTRACT}; {what} is a bool")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        return float(value)
    if isinstance(value, np.ndarray):
        raise TypeError(f"{_CONTRACT}; {what} is an array of shape {value.shape} and dtype "
                        f"{value.dtype} (reduce it to a scalar, e.g. float(x.sum()))")
    raise TypeError(f"{_CONTRACT}; {what} is {type(value).__name__}")


def normalize_output(value: Any) -> tuple[float, dict[str, float]]:
    """``(total, {name: value})`` as Python floats, from any accepted return value."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise TypeError(f"{_CONTRACT}; got a tuple of length {len(value)}")
        total, components = value
        if not isinstance(components, dict):
            raise TypeError(f"{_CONTRACT}; the second item is {type(components).__name__}")
        if len(components) > MAX_COMPONENTS:
            raise TypeError(f"{_CONTRACT}; it returned {len(components)} components, at most "
                            f"{MAX_COMPONENTS} are allowed")
        out: dict[str, float] = {}
        for name, item in components.items():
            if not isinstance(name, str):
                raise TypeError(f"{_CONTRACT}; component key {name!r:.60} is not a str")
            if not (0 < len(name) <= MAX_COMPONENT_NAME and name.isprintable()):
                raise TypeError(f"{_CONTRACT}; component name {name[:MAX_COMPONENT_NAME]!r} must be "
                                f"1-{MAX_COMPONENT_NAME} printable characters (it names a TensorBoard "
                                "tag and a column)")
            out[name] = _as_float(item, f"component {name!r}")
        return _as_float(total, "the total"), out
    return _as_float(value, "the value"), {}


_F64 = np.dtype(np.float64)
_BATCH_CONTRACT = ("compute_reward_batch must return an array of shape [N] (one total per env), or a "
                   "tuple (totals, components) with components a dict[str, array of shape [N]]")


def _as_batch(value: Any, n: int, what: str, program: str) -> np.ndarray:
    """``program``: the message prefix naming the program ("" for none)."""
    array = value
    if type(value) is not np.ndarray:
        if isinstance(value, (list, tuple, int, float, np.generic)):
            array = np.asarray(value)
        else:
            raise TypeError(f"{program}{_BATCH_CONTRACT}; {what} is "
                            f"{type(value).__name__}")
    if array.dtype.kind not in "iuf":
        why = "bools" if array.dtype.kind == "b" else f"of dtype {array.dtype}"
        raise TypeError(f"{program}{_BATCH_CONTRACT}; {what} is {why}")
    if array.shape != (n,):
        hint = (" (it mixes the envs: reduce each env's row, e.g. np.linalg.norm(d, axis=-1), "
                "np.sum(x, axis=-1))" if array.ndim == 0 and n > 1 else
                " (reduce each row to one number)" if array.ndim > 1 else "")
        raise TypeError(f"{program}{_BATCH_CONTRACT}; {what} has shape {array.shape}, "
                        f"expected ({n},) for a batch of {n}{hint}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def normalize_batch_output(value: Any, n: int, *,
                           program: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(totals [n], {name: [n]})`` as float arrays, from what a batched program returned for
    a batch of ``n``; raises ``TypeError`` for a wrong type or shape, its message naming
    ``program`` when given. Finiteness is the guard's check
    (:func:`reward_synthesis.safety.guard.check_finite_batch`)."""
    shape = (n,)
    if type(value) is tuple and len(value) == 2 and type(value[1]) is dict:  # the common case, every vector step
        total, components = value
        if (type(total) is np.ndarray and total.dtype is _F64 and total.shape == shape
                and len(components) <= MAX_COMPONENTS):
            for name, item in components.items():
                if not (type(item) is np.ndarray and item.dtype is _F64 and item.shape == shape
                        and type(name) is str and 0 < len(name) <= MAX_COMPONENT_NAME and name.isprintable()):
                    break
            else:
                return total, components
    elif type(value) is np.ndarray and value.dtype is _F64 and value.shape == shape:
        return value, {}
    program = f"reward program {program}: " if program else ""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        total, components = value
        if len(components) > MAX_COMPONENTS:
            raise TypeError(f"{program}{_BATCH_CONTRACT}; it returned {len(components)} "
                            f"components, at most {MAX_COMPONENTS} are allowed")
        out: dict[str, np.ndarray] = {}
        for name, item in components.items():
            if not isinstance(name, str):
                raise TypeError(f"{program}{_BATCH_CONTRACT}; component key {name!r:.60} "
                                "is not a str")
            if not (0 < len(name) <= MAX_COMPONENT_NAME and name.isprintable()):
                raise TypeError(f"{program}{_BATCH_CONTRACT}; component name "
                                f"{name[:MAX_COMPONENT_NAME]!r} must be 1-{MAX_COMPONENT_NAME} printable "
                                "characters (it names a TensorBoard tag and a column)")
            out[name] = _as_batch(item, n, f"component {name!r}", program)
        return _as_batch(total, n, "the total", program), out
    return _as_batch(value, n, "the value", program), {}


# --------------------------------------------------------------------------------------------
# run_isolated
# --------------------------------------------------------------------------------------------

ERROR_KINDS = ("rejected", "exception", "bad_output", "timeout", "cpu_limit", "memory", "crash")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_OUTPUT_LIMIT_BYTES = 64 * 1024 * 1024  # RLIMIT_FSIZE: stdout/stderr/result files


@dataclass
class IsolatedResult:
    """What a reward program did on the samples in a child process.

    On failure ``totals``/``components``/``call_seconds`` hold the calls made before it.

    A batched program (``batched``) is called once on all samples stacked (``totals`` and
    ``components``, in ``batch_seconds``) and then on each sample alone as a batch of one
    (``single_totals``, ``single_components``; ``call_seconds`` times these calls).
    """

    ok: bool
    totals: np.ndarray
    components: dict[str, np.ndarray]
    call_seconds: np.ndarray
    error_kind: str | None = None
    error: str = ""
    failed_index: int | None = None  # the sample whose call failed, when known
    wall_seconds: float = 0.0
    stderr_tail: str = field(default="", repr=False)
    batched: bool = False
    single_totals: np.ndarray | None = None
    single_components: dict[str, np.ndarray] | None = None
    batch_seconds: float = 0.0

    @property
    def n_calls(self) -> int:
        return int(self.totals.shape[0])


def run_isolated(source: str, samples: Sequence[tuple[State, np.ndarray]], *,
                 filename: str = "<reward>", cpu_seconds: float = 10, wall_seconds: float = 30,
                 memory_mb: int = 2048) -> IsolatedResult:
    """Run ``compute_reward`` on every sample in a separate, resource-limited process (a batched
    program: once on all samples stacked, then on each sample alone; see :class:`IsolatedResult`).

    Limits: ``cpu_seconds`` of CPU (RLIMIT_CPU, whole seconds, at least 1), ``memory_mb`` of
    address space (RLIMIT_AS), ``wall_seconds`` of wall clock. Never raises for a bad program;
    raises ``ValueError`` for samples that cannot be stacked (different fields or shapes).
    """
    violations = static_check(source, filename)
    if violations:  # no process for what the child would reject anyway
        return _failure("rejected", "\n".join(str(v) for v in violations))
    workdir = Path(tempfile.mkdtemp(prefix="reward-sandbox-"))
    try:
        _write_inputs(workdir, source, filename, samples)
        return _run_worker(workdir, cpu_seconds=cpu_seconds, wall_seconds=wall_seconds,
                           memory_mb=memory_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _failure(kind: str, error: str, **extra: Any) -> IsolatedResult:
    empty = np.zeros(0, dtype=np.float64)
    return IsolatedResult(False, empty, {}, empty.copy(), error_kind=kind, error=error, **extra)


def _write_inputs(workdir: Path, source: str, filename: str,
                  samples: Sequence[tuple[State, np.ndarray]]) -> None:
    """Program text, a JSON manifest and an ``.npz`` of stacked arrays (never a pickle)."""
    names = list(samples[0][0].keys()) if samples else []
    for index, (state, _) in enumerate(samples):
        if set(state.keys()) != set(names):
            raise ValueError(f"samples must all have the same state fields: sample {index} has "
                             f"{sorted(state.keys())}, sample 0 has {sorted(names)}")
    arrays: dict[str, np.ndarray] = {}
    try:
        for i, name in enumerate(names):
            arrays[f"field{i}"] = np.stack([np.asarray(s[name], dtype=np.float64)
                                            for s, _ in samples])
        arrays["action"] = np.stack([np.asarray(a, dtype=np.float64) for _, a in samples]) \
            if samples else np.zeros((0, 0))
    except ValueError as err:
        raise ValueError(f"samples must all have the same array shapes: {err}") from err
    np.savez(workdir / "samples.npz", **arrays)
    (workdir / "program.txt").write_text(source, encoding="utf-8")
    manifest = {"filename": filename, "fields": names, "n": len(samples)}
    (workdir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _child_env(workdir: Path) -> dict[str, str]:
    """Almost nothing from the parent; single-threaded BLAS so RLIMIT_AS is not spent on
    thread stacks."""
    return {
        "PATH": os.defpath,
        "HOME": str(workdir),
        "PYTHONPATH": str(_PACKAGE_ROOT),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _limiter(cpu_seconds: float, memory_mb: int) -> Callable[[], None]:
    cpu = max(1, math.ceil(cpu_seconds))
    memory = int(memory_mb) * 1024 * 1024

    def apply() -> None:  # runs in the child between fork and exec: syscalls only
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_OUTPUT_LIMIT_BYTES, _OUTPUT_LIMIT_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _run_worker(workdir: Path, *, cpu_seconds: float, wall_seconds: float,
                memory_mb: int) -> IsolatedResult:
    # -P: the temp dir is not put on sys.path; -s: no user site-packages.
    command = [sys.executable, "-P", "-s", "-m", "reward_synthesis.safety.worker", str(workdir)]
    started = time.perf_counter()
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        try:
            proc = subprocess.run(
                command, cwd=workdir, env=_child_env(workdir), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, preexec_fn=_limiter(cpu_seconds, memory_mb),
                timeout=wall_seconds, check=False,
            )
            returncode: int | None = proc.returncode
        except subprocess.TimeoutExpired:  # run() has killed and reaped the child
            returncode = None
    wall = time.perf_counter() - started
    stderr = _tail(workdir / "stderr.txt")
    if returncode is None:
        return _failure("timeout", f"reward program ran longer than {wall_seconds:g} s "
                                   "(wall clock) and was stopped", wall_seconds=wall,
                        stderr_tail=stderr)
    result_path = workdir / "result.json"
    if result_path.exists():
        try:
            return _parse_result(result_path, wall, stderr)
        except (ValueError, KeyError, TypeError) as error:
            return _failure("crash", f"unreadable result from the sandbox worker: {error}",
                            wall_seconds=wall, stderr_tail=stderr)
    if returncode == -signal.SIGXCPU:
        return _failure("cpu_limit", f"reward program used more than "
                                     f"{max(1, math.ceil(cpu_seconds))} s of CPU time and was "
                                     "stopped", wall_seconds=wall, stderr_tail=stderr)
    if returncode < 0:
        how = f"killed by signal {signal.Signals(-returncode).name}"
        if returncode == -signal.SIGKILL:
            how += " (possibly out of memory)"
    else:
        how = f"exited with status {returncode}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    return _failure("crash", f"sandbox worker {how} without a result: {last}",
                    wall_seconds=wall, stderr_tail=stderr)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _parse_result(path: Path, wall: float, stderr: str) -> IsolatedResult:
    raw = json.loads(path.read_text(encoding="utf-8"))
    kind = raw.get("error_kind")
    if kind is not None and kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}")
    singles = raw.get("single_totals")
    batch: dict[str, Any] = {}
    if raw.get("batched"):
        batch = {
            "batched": True, "batch_seconds": float(raw.get("batch_seconds", 0.0)),
            "single_totals": None if singles is None else np.asarray(singles, dtype=np.float64).reshape(-1),
            "single_components": None if singles is None else {
                str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in raw["single_components"].items()}}
    return IsolatedResult(
        ok=bool(raw["ok"]),
        totals=np.asarray(raw["totals"], dtype=np.float64).reshape(-1),
        components={str(k): np.asarray(v, dtype=np.float64).reshape(-1)
                    for k, v in raw["components"].items()},
        call_seconds=np.asarray(raw["call_seconds"], dtype=np.float64).reshape(-1),
        error_kind=kind,
        error=str(raw.get("error", "")),
        failed_index=raw.get("failed_index"),
        wall_seconds=wall,
        stderr_tail=stderr,
        **batch,
    )
