"""Safe arithmetic formulas in one variable, e.g. ``rho**3/2`` or ``rho*log(rho) + rho**2``.

Parsed with :mod:`ast` and checked against a whitelist of nodes, names and functions, then
compiled to a closure over torch operations: no ``eval``, no attribute access, no calls other
than the elementary functions below.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Callable

import torch
from torch import Tensor

from zoo.errors import ZooError

FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "pow": torch.pow, "abs": torch.abs,
    "log1p": torch.log1p, "expm1": torch.expm1, "sinh": torch.sinh, "cosh": torch.cosh,
    "tanh": torch.tanh, "atan": torch.atan,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Pow: operator.pow}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_LENGTH = 500


def parse(text: str, variable: str = "rho") -> Callable[[Tensor], Tensor]:
    """Compile ``text`` to f(variable: Tensor) -> Tensor, or raise ZooError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ZooError("empty formula")
    if len(text) > MAX_LENGTH:
        raise ZooError(f"formula longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ZooError(f"formula {text!r} is not valid arithmetic: {exc.msg}") from None

    def build(node: ast.AST) -> Callable[[Tensor], Tensor | float]:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            value = float(node.value)
            return lambda v: value
        if isinstance(node, ast.Name):
            if node.id == variable:
                return lambda v: v
            if node.id in CONSTANTS:
                value = CONSTANTS[node.id]
                return lambda v: value
            raise ZooError(f"formula {text!r}: unknown name {node.id!r} "
                           f"(allowed: {variable}, {', '.join(CONSTANTS)}, and the functions {', '.join(FUNCTIONS)})")
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            op, left, right = BINARY[type(node.op)], build(node.left), build(node.right)
            return lambda v: op(left(v), right(v))
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            op, inner = UNARY[type(node.op)], build(node.operand)
            return lambda v: op(inner(v))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            name = node.func.id
            if name not in FUNCTIONS:
                raise ZooError(f"formula {text!r}: unknown function {name!r} (allowed: {', '.join(FUNCTIONS)})")
            fn, args = FUNCTIONS[name], [build(a) for a in node.args]
            arity = 2 if name == "pow" else 1
            if len(args) != arity:
                raise ZooError(f"formula {text!r}: {name}() takes {arity} argument{'s' if arity > 1 else ''}")
            return lambda v: fn(*(_tensor(a(v), v) for a in args))
        raise ZooError(f"formula {text!r}: {type(node).__name__} is not allowed "
                       f"(use numbers, {variable}, + - * / **, and {', '.join(FUNCTIONS)})")

    body = build(tree.body)
    return lambda v: _tensor(body(v), v)


def _tensor(value: Tensor | float, like: Tensor) -> Tensor:
    return value if torch.is_tensor(value) else torch.full_like(like, value)
