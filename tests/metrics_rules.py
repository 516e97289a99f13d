"""Prometheus naming rules for volimg's metrics, and a PromQL subset to test alert rules.

From Prometheus' "Metric and label naming" and "Instrumentation" pages, as
/work/shared/README.md sums them up for batch jobs: an application prefix; base units
(`_seconds`, `_bytes`), never milli/kilo/minutes; `_total` for counters and only for
counters; timestamps as `..._timestamp_seconds`; no high-cardinality labels (no
volume or image ids); and a 0 for every outcome that can occur, so a rate or an alert
does not see a missing series as "no data".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from volimg.metrics import Sample

_NON_BASE_UNITS = (
    "_milliseconds", "_microseconds", "_nanoseconds", "_ms", "_minutes", "_hours", "_days",
    "_kilobytes", "_megabytes", "_gigabytes", "_kb", "_mb", "_gb", "_kib", "_mib", "_gib",
    "_percent",
)  # fmt: skip
# Labels that would carry one series per resource.
_HIGH_CARDINALITY_LABELS = frozenset(
    ("id", "uuid", "volume", "volume_id", "image", "image_id", "request_id", "task_id", "name")
)
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def naming_problems(
    samples: Sequence[Sample],
    *,
    prefix: str = "volimg_",
    outcomes: Mapping[str, tuple[str, Iterable[str]]] | None = None,
) -> list[str]:
    """Every rule a set of samples breaks, one sentence each (empty: all is well).

    ``outcomes`` maps a metric name to (label, every value it can take): each of those
    must have its own sample, 0 when it did not happen.
    """
    problems: list[str] = []
    for sample in samples:
        name = sample.name
        if not name.startswith(prefix):
            problems.append(f"{name}: lacks the application prefix {prefix!r}")
        if ":" in name:
            problems.append(f"{name}: colons are reserved for recording rules")
        if sample.kind == "counter" and not name.endswith("_total"):
            problems.append(f"{name}: a counter's name ends in _total")
        if sample.kind != "counter" and name.endswith("_total"):
            problems.append(f"{name}: only counters end in _total")
        for unit in _NON_BASE_UNITS:
            if name.endswith(unit) or f"{unit}_" in name:
                problems.append(f"{name}: use base units (seconds, bytes), not {unit[1:]}")
        if "timestamp" in name and not name.endswith("_timestamp_seconds"):
            problems.append(f"{name}: a timestamp is ..._timestamp_seconds (Unix seconds)")
        if not sample.help:
            problems.append(f"{name}: has no HELP text")
        for label, value in sample.labels.items():
            if label in _HIGH_CARDINALITY_LABELS:
                problems.append(f"{name}: label {label!r} has one value per resource")
            if _UUID.search(value):
                problems.append(f"{name}: label {label}={value!r} carries an id")
    for name, (label, values) in (outcomes or {}).items():
        present = {s.labels.get(label) for s in samples if s.name == name}
        for value in values:
            if value not in present:
                problems.append(f"{name}: no sample for {label}={value!r} (export 0)")
    return problems


# --- a PromQL subset, to test alert rules against the files volimg writes ---------------
#
# Enough of Prometheus' query language for docs/cron.md's rules: numbers, time(),
# selectors with =, !=, =~, !~ matchers, + - * /, comparisons (filtering, or with
# ``bool``), and / or / unless, absent(), and parentheses, with Prometheus' precedence
# and its vector matching (one-to-one on every label but __name__; arithmetic drops
# the name, comparisons keep it). Samples are what a scrape of the textfile collector
# would give: the file's series plus the target's labels (instance, job).

Labels = dict[str, str]
Vector = list[tuple[Labels, float]]
Value = float | Vector

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"|(?P<op>==|!=|>=|<=|=~|!~|[-+*/<>=(){},\[\]]))"
)
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def scrape(text: str, **target: str) -> Vector:
    """The samples one scrape of a textfile gives, with the target's labels added."""
    from prometheus_client.parser import text_string_to_metric_families

    found: Vector = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.append(({**target, **sample.labels, "__name__": sample.name}, sample.value))
    return found


def evaluate(expr: str, series: Vector, at: float) -> Value:
    """The value of ``expr`` at Unix time ``at`` over ``series`` (a scalar or a vector)."""
    parser = _Parser(expr, series, at)
    value = parser.alternatives()
    if parser.position != len(parser.tokens):
        raise ValueError(f"unexpected {parser.tokens[parser.position]!r} in {expr!r}")
    return value


def fires(expr: str, series: Vector, at: float, *, for_seconds: float = 0.0) -> bool:
    """Would an alert with this ``expr`` (and ``for:``) fire at ``at``, with ``series``
    unchanged over the ``for`` window?"""
    moments = (at - for_seconds, at) if for_seconds else (at,)
    return all(_non_empty(evaluate(expr, series, moment)) for moment in moments)


def _non_empty(value: Value) -> bool:
    if isinstance(value, float):
        raise ValueError("an alert expression must give a vector, not a scalar")
    return bool(value)


def _signature(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _arith(op: str, left: float, right: float) -> float:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return math.copysign(math.inf, left) if left else math.nan
    return left / right


def _compare(op: str, left: float, right: float) -> bool:
    return {
        "==": left == right,
        "!=": left != right,
        ">=": left >= right,
        "<=": left <= right,
        ">": left > right,
        "<": left < right,
    }[op]


class _Parser:
    def __init__(self, expr: str, series: Vector, at: float) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(expr):
            if expr[position:].strip() == "":
                break
            match = _TOKEN.match(expr, position)
            if match is None or match.end() == position:
                raise ValueError(f"cannot read {expr[position:]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.position = 0
        self.series = series
        self.at = at

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        if self.position >= len(self.tokens):
            raise ValueError("the expression ends too early")
        token = self.tokens[self.position][1]
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, found {token!r}")
        self.position += 1
        return token

    # precedence, lowest first: or; and, unless; comparisons; + -; * /
    def alternatives(self) -> Value:
        left = self.conjunction()
        while self.peek() == "or":
            self.take()
            right = self.conjunction()
            left = self._set("or", left, right)
        return left

    def conjunction(self) -> Value:
        left = self.comparison()
        while self.peek() in ("and", "unless"):
            op = self.take()
            left = self._set(op, left, self.comparison())
        return left

    def comparison(self) -> Value:
        left = self.additive()
        while self.peek() in _COMPARISONS:
            op = self.take()
            as_bool = self.peek() == "bool"
            if as_bool:
                self.take()
            left = self._binary(op, left, self.additive(), as_bool=as_bool)
        return left

    def additive(self) -> Value:
        left = self.multiplicative()
        while self.peek() in ("+", "-"):
            op = self.take()
            left = self._binary(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Value:
        left = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            left = self._binary(op, left, self.unary())
        return left

    def unary(self) -> Value:
        if self.peek() == "-":
            self.take()
            return self._binary("*", -1.0, self.unary())
        return self.primary()

    def primary(self) -> Value:
        kind, token = self.tokens[self.position]
        if kind == "number":
            self.take()
            return float(token)
        if token == "(":
            self.take()
            value = self.alternatives()
            self.take(")")
            return value
        if kind != "name":
            raise ValueError(f"unexpected {token!r}")
        self.take()
        if self.peek() == "(":
            return self._call(token)
        return self._select(token)[0]

    def _call(self, function: str) -> Value:
        self.take("(")
        if function == "time":
            self.take(")")
            return self.at
        if function == "absent":
            found, equal = self._select(self.take())
            self.take(")")
            return [] if found else [(dict(equal), 1.0)]
        raise ValueError(f"function {function}() is not in this subset")

    def _select(self, name: str) -> tuple[Vector, Labels]:
        matchers: list[tuple[str, str, str]] = [("__name__", "=", name)]
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label = self.take()
                op = self.take()
                value = json.loads(self.take())
                matchers.append((label, op, value))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        found = [
            (dict(labels), value)
            for labels, value in self.series
            if all(_matches(labels.get(label, ""), op, wanted) for label, op, wanted in matchers)
        ]
        equal = {label: wanted for label, op, wanted in matchers[1:] if op == "="}
        return found, equal

    def _binary(self, op: str, left: Value, right: Value, *, as_bool: bool = False) -> Value:
        comparison = op in _COMPARISONS
        if isinstance(left, float) and isinstance(right, float):
            if comparison:
                if not as_bool:
                    raise ValueError("comparing two scalars needs bool")
                return float(_compare(op, left, right))
            return _arith(op, left, right)
        if isinstance(left, float) or isinstance(right, float):
            out: Vector = []
            vector = right if isinstance(left, float) else left
            for labels, value in vector:  # type: ignore[union-attr]
                a, b = (left, value) if isinstance(left, float) else (value, right)
                if comparison:
                    keep = _compare(op, a, b)  # type: ignore[arg-type]
                    if as_bool:
                        out.append((_without_name(labels), float(keep)))
                    elif keep:
                        out.append((labels, value))
                else:
                    out.append((_without_name(labels), _arith(op, a, b)))  # type: ignore[arg-type]
            return out
        by_signature = {_signature(labels): (labels, value) for labels, value in right}
        out = []
        for labels, value in left:
            match = by_signature.get(_signature(labels))
            if match is None:
                continue
            other = match[1]
            if comparison:
                keep = _compare(op, value, other)
                if as_bool:
                    out.append((_without_name(labels), float(keep)))
                elif keep:
                    out.append((labels, value))
            else:
                out.append((_without_name(labels), _arith(op, value, other)))
        return out

    def _set(self, op: str, left: Value, right: Value) -> Value:
        if isinstance(left, float) or isinstance(right, float):
            raise ValueError(f"{op} works on vectors only")
        right_signatures = {_signature(labels) for labels, _ in right}
        if op == "and":
            return [(labels, v) for labels, v in left if _signature(labels) in right_signatures]
        if op == "unless":
            return [(labels, v) for labels, v in left if _signature(labels) not in right_signatures]
        left_signatures = {_signature(labels) for labels, _ in left}
        return left + [
            (labels, v) for labels, v in right if _signature(labels) not in left_signatures
        ]


def _without_name(labels: Labels) -> Labels:
    return {k: v for k, v in labels.items() if k != "__name__"}


def _matches(actual: str, op: str, wanted: str) -> bool:
    if op == "=":
        return actual == wanted
    if op == "!=":
        return actual != wanted
    if op == "=~":
        return re.fullmatch(wanted, actual) is not None
    if op == "!~":
        return re.fullmatch(wanted, actual) is None
    raise ValueError(f"unknown matcher {op!r}")
