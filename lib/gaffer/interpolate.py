"""Expand ``$VAR``, ``${VAR}`` and ``$((expr))`` in job arguments and env values.

``$$`` is a literal ``$``. ``$((8000 + GAFFER_INDEX))`` does integer arithmetic
(``+ - * / %`` and parentheses) over literals and variables holding integers, so a
job can give each of its processes its own port. A variable that is not defined is
an error, raised when the job is loaded rather than when a process is spawned.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping

_TOKEN = re.compile(
    r"""\$(?:
        (?P<escaped>\$)
      | \(\((?P<expr>[^()]*(?:\([^()]*\)[^()]*)*)\)\)
      | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}
      | (?P<named>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv,
    ast.Mod: operator.mod,
}


class UndefinedVariable(KeyError):
    """A ``$NAME`` whose name is not in the environment."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"undefined variable ${self.name}"


class BadExpression(ValueError):
    """A ``$((...))`` that is not integer arithmetic."""


def _arith(expr: str, env: Mapping[str, str]) -> int:
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise BadExpression(f"bad arithmetic $(({expr}))") from None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise UndefinedVariable(node.id)
            try:
                return int(env[node.id])
            except ValueError:
                raise BadExpression(
                    f"${node.id} is {env[node.id]!r}, not an integer, in $(({expr}))"
                ) from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.FloorDiv | ast.Div | ast.Mod) and right == 0:
                raise BadExpression(f"division by zero in $(({expr}))")
            return _BINOPS[type(node.op)](left, right)
        raise BadExpression(f"only integer arithmetic is allowed in $(({expr}))")

    return ev(tree)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Return ``text`` with every variable reference replaced from ``env``.

    Raises :class:`UndefinedVariable` or :class:`BadExpression`.
    """
    if "$" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("expr") is not None:
            return str(_arith(m.group("expr"), env))
        name = m.group("braced") or m.group("named")
        if name not in env:
            raise UndefinedVariable(name)
        return env[name]

    return _TOKEN.sub(sub, text)
