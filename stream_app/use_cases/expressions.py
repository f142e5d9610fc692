"""Arithmetic expressions of the simulation specs, evaluated on numpy arrays.

An expression is a Python-syntax formula over named variables, numbers, arithmetic,
comparisons and a fixed set of functions (below). Nothing else parses: no attributes, no
subscripts, no lambdas, no builtins, so a spec file can never run code. Random functions draw
one value per row from the simulation's seeded generator.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stream_app.errors import ExpressionError

if TYPE_CHECKING:
    from stream_app.use_cases.spec import UseCase

Array = np.ndarray[Any, np.dtype[np.float64]]

MATH_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "floor": np.floor,
    "clip": np.clip,
    "minimum": np.minimum,
    "maximum": np.maximum,
    "where": np.where,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}
RANDOM_FUNCTIONS = (
    "uniform",
    "normal",
    "lognormal",
    "randint",
    "bernoulli",
    "exponential",
    "poisson",
)
CLOCK_VARIABLES = ("hour_of_day", "day_of_week")

_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Compare,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Pow,
    ast.Mod,
    ast.FloorDiv,
    ast.USub,
    ast.UAdd,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
)


class Expression:
    """One parsed expression; ``names`` are the variables it reads."""

    def __init__(self, source: str, where: str) -> None:
        self.source = source
        self.where = where
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"{where}: cannot parse {source!r}: {exc.msg}") from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise ExpressionError(
                    f"{where}: {type(node).__name__} is not allowed in {source!r}"
                )
            if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
                raise ExpressionError(f"{where}: only numbers are allowed as constants")
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.keywords:
                    raise ExpressionError(f"{where}: call functions by name, positionally")
                function = node.func.id
                if function not in MATH_FUNCTIONS and function not in RANDOM_FUNCTIONS:
                    raise ExpressionError(f"{where}: unknown function {function}()")
            if isinstance(node, ast.Compare) and len(node.ops) != 1:
                raise ExpressionError(f"{where}: chain comparisons with where(), not a < b < c")
            if isinstance(node, ast.Name) and not (
                node.id in MATH_FUNCTIONS or node.id in RANDOM_FUNCTIONS
            ):
                names.add(node.id)
        self.names = frozenset(names)
        self._code = compile(tree, f"<{where}>", "eval")

    def evaluate(self, variables: Mapping[str, Any], rng: np.random.Generator, rows: int) -> Array:
        """The expression for ``rows`` rows, as a float array of that length."""
        namespace: dict[str, Any] = {"__builtins__": {}}
        namespace.update(MATH_FUNCTIONS)
        namespace.update(_random_functions(rng, rows))
        namespace.update(variables)
        with np.errstate(all="ignore"):
            result = eval(self._code, namespace)
        array = np.broadcast_to(np.asarray(result, dtype=np.float64), (rows,)).copy()
        bad = ~np.isfinite(array)
        if bad.any():
            raise ExpressionError(
                f"{self.where}: {self.source!r} gave {int(bad.sum())} non-finite values"
            )
        return array


def _random_functions(rng: np.random.Generator, rows: int) -> dict[str, Callable[..., Any]]:
    return {
        "uniform": lambda low, high: rng.uniform(low, high, rows),
        "normal": lambda mean, sd: rng.normal(mean, sd, rows),
        "lognormal": lambda mean, sigma: rng.lognormal(mean, sigma, rows),
        "randint": lambda low, high: rng.integers(int(low), int(high), rows).astype(float),
        "bernoulli": lambda p: (rng.random(rows) < p).astype(float),
        "exponential": lambda scale: rng.exponential(scale, rows),
        "poisson": lambda lam: rng.poisson(lam, rows).astype(float),
    }


class Scope:
    """The variables of one batch of rows: given arrays, plus ``derived`` expressions computed
    on first use (each at most once per scope)."""

    def __init__(
        self,
        given: Mapping[str, Any],
        derived: Mapping[str, Expression],
        rng: np.random.Generator,
        rows: int,
    ) -> None:
        self._values: dict[str, Any] = dict(given)
        self._derived = derived
        self._rng = rng
        self.rows = rows
        self._resolving: set[str] = set()

    def get(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        expression = self._derived.get(name)
        if expression is None or name in self._resolving:
            raise ExpressionError(f"{name} is not known here (or is defined in terms of itself)")
        self._resolving.add(name)
        try:
            self._values[name] = self.evaluate(expression)
        finally:
            self._resolving.discard(name)
        return self._values[name]

    def evaluate(self, expression: Expression) -> Array:
        return expression.evaluate({n: self.get(n) for n in expression.names}, self._rng, self.rows)


def resolvable(
    names: frozenset[str], given: set[str], derived: Mapping[str, Expression]
) -> set[str]:
    """The names that cannot be resolved from ``given`` and the ``derived`` expressions."""
    unresolved: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> bool:
        if name in given:
            return True
        if name not in derived or name in path:
            return False
        return all(visit(n, (*path, name)) for n in derived[name].names)

    for name in names:
        if not visit(name, ()):
            unresolved.add(name)
    return unresolved


def check_simulation_expressions(use_case: UseCase, path: Path) -> None:
    """Parse every expression of the simulation and check that each name it reads can be
    resolved where it is evaluated, so a typo fails at load with the file and the key."""
    sim = use_case.simulation
    assert sim is not None
    attributes_of: dict[str, set[str]] = {}
    for name, attribute in sim.attributes.items():
        Expression(attribute.value, f"{path}: simulation.attributes.{name}")
        attributes_of.setdefault(attribute.entity, set()).add(name)
    derived = {
        n: Expression(src, f"{path}: simulation.derived.{n}") for n, src in sim.derived.items()
    }
    drifted = {
        **derived,
        **{
            n: Expression(src, f"{path}: simulation.drift.derived.{n}")
            for n, src in sim.drift.derived.items()
        },
    }

    def given(entities: list[str]) -> set[str]:
        names = set(CLOCK_VARIABLES)
        for entity in entities:
            names |= attributes_of.get(entity, set())
        return names

    def check(key: str, source: str, names: set[str]) -> None:
        expression = Expression(source, f"{path}: simulation.{key}")
        for variables in (derived, drifted):
            if unknown := sorted(resolvable(expression.names, names, variables)):
                raise ExpressionError(
                    f"{path}: simulation.{key}: unknown names {unknown} "
                    f"(known here: {sorted(names | set(variables))})"
                )

    event_names = given(use_case.entities.keys)
    for key, source in sim.event.items():
        check(f"event.{key}", source, event_names)
    label_names = event_names | set(sim.event)
    check("label", sim.label, label_names)
    check("label_delay_s", sim.label_delay_s, label_names)
    if sim.drift.label is not None:
        check("drift.label", sim.drift.label, label_names)
    for key, source in sim.drift.event.items():
        check(f"drift.event.{key}", source, event_names)
    reading_names = given(sim.reading_entities)
    for key, source in sim.reading.items():
        check(f"reading.{key}", source, reading_names)
    for key, source in sim.drift.reading.items():
        check(f"drift.reading.{key}", source, reading_names)
    for feature, source in sim.batch.items():
        entity = use_case.features[feature].entity  # type: ignore[union-attr]
        check(f"batch.{feature}", source, given([entity]))
