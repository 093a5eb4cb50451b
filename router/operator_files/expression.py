"""The routing filters' expression language: a small, safe subset of Python's expression syntax.

    category == "transaction_failed" and customer.vip
    urgency >= "high" and channel in ["voice", "chat"]
    "refund" in text or len(entities.transaction_id) > 0

The text is parsed with Python's own parser (`ast.parse(..., mode="eval")`) and the tree is
walked against a whitelist: comparisons, `and`/`or`/`not`, constants, lists of constants, the
known names, attributes of the namespaces `customer` and `entities`, and `len()`. Nothing is
ever compiled by Python or passed to eval: the checked tree becomes closures written in this
module, one per node, and evaluation is calling them.
Urgency compares by rank ("low" < "normal" < "high" < "critical"), not alphabetically.

This module imports nothing of the project but the envelope, so config and routing may use it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from router.core.envelope import Urgency

# The names a filter may use, and what each holds. Namespaces hold attributes.
NAMES: dict[str, str] = {
    "category": "the classifier's category",
    "urgency": "low < normal < high < critical",
    "confidence": "the classifier's confidence, 0 to 1",
    "doubtful": "true when the confidence is below classifier.yaml's triage_below_confidence",
    "channel": "sms, whatsapp, voice, email, chat or telegram",
    "language": "zh or en",
    "lane": "urgent or standard (the gateway's pre-screen)",
    "text": "the redacted message text",
    "subject": "the email subject, or empty",
    "redacted": "true when a secret was masked in the message",
    "rules": "names of the classifier rules that fired",
    "entities": "namespace: entities.transaction_id, entities.amount ... (lists)",
    "customer": "namespace: customer.vip, customer.returning and other customer attributes",
}
NAMESPACES = frozenset({"entities", "customer"})
FUNCTIONS = frozenset({"len"})
MAX_LENGTH = 2000
MAX_NODES = 200

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class ExpressionError(ValueError):
    """A filter that does not parse or uses something outside the language; says what and where."""


class EvaluationError(Exception):
    """A filter that parsed but could not be evaluated on these facts (comparing text to a number)."""


class Expression:
    """A checked expression, evaluated against a mapping of names to values."""

    def __init__(self, source: str):
        self.source = source
        self._evaluate = _compile(parse(source))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        try:
            return bool(self._evaluate(facts))
        except EvaluationError:
            raise
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"{self.source!r}: {exc}") from exc


def parse(source: str) -> ast.expr:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("a filter expression must be a non-empty string")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"a filter expression may be at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(
            f"a filter expression may have at most {MAX_NODES} parts (has {count})"
        )
    _check(tree)
    return tree


def _where(node: ast.AST) -> str:
    return f" at column {node.col_offset + 1}" if hasattr(node, "col_offset") else ""


def _check(node: ast.AST) -> None:
    match node:
        case ast.BoolOp(values=values):
            for value in values:
                _check(value)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            _check(operand)
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float())):
            pass
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            for op in ops:
                if type(op) not in _COMPARE:
                    raise ExpressionError(
                        f"operator {type(op).__name__} is not allowed{_where(node)}"
                    )
            for part in (left, *comparators):
                _check(part)
            _check_urgency_literals(left, comparators)
        case ast.Constant(value=value):
            if not isinstance(value, str | int | float | bool | type(None)):
                raise ExpressionError(f"constant {value!r} is not allowed{_where(node)}")
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            for elt in elts:
                if not isinstance(elt, ast.Constant):
                    raise ExpressionError(f"a list may hold only constants{_where(elt)}")
                _check(elt)
        case ast.Name(id=name):
            if name in ("true", "false", "none"):
                raise ExpressionError(f"write {name.capitalize()}, not {name}{_where(node)}")
            if name not in NAMES:
                raise ExpressionError(
                    f"unknown name {name!r}{_where(node)}; known: {', '.join(NAMES)}"
                )
        case ast.Attribute(value=ast.Name(id=namespace), attr=attr):
            if namespace not in NAMESPACES:
                raise ExpressionError(
                    f"{namespace}.{attr}: only {' and '.join(sorted(NAMESPACES))} have attributes{_where(node)}"
                )
            if attr.startswith("_"):
                raise ExpressionError(f"attribute {attr!r} is not allowed{_where(node)}")
        case ast.Call(func=ast.Name(id=function), args=args, keywords=[]) if function in FUNCTIONS:
            if len(args) != 1:
                raise ExpressionError(f"{function}() takes one argument{_where(node)}")
            _check(args[0])
        case _:
            raise ExpressionError(f"{_describe(node)} is not allowed in a filter{_where(node)}")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "calling a function other than len()"
    if isinstance(node, ast.Attribute):
        return "this attribute access"
    return f"{type(node).__name__.lower()} syntax"


def _check_urgency_literals(left: ast.expr, comparators: list[ast.expr]) -> None:
    """`urgency == "hihg"` is a typo that would never match: refuse it at load time."""
    parts = [left, *comparators]
    if not any(isinstance(p, ast.Name) and p.id == "urgency" for p in parts):
        return
    for part in parts:
        values = part.elts if isinstance(part, ast.List | ast.Tuple) else [part]
        for value in values:
            if isinstance(value, ast.Constant) and value.value not in set(Urgency):
                raise ExpressionError(
                    f"{value.value!r} is not an urgency; one of {', '.join(Urgency)}{_where(value)}"
                )


class _Namespace:
    """customer.* and entities.*: a missing attribute is None (customer) or [] (entities)."""

    def __init__(self, values: Mapping[str, Any], missing: Any):
        self.values, self.missing = values, missing

    def get(self, name: str) -> Any:
        return self.values.get(name, self.missing)


def namespace(values: Mapping[str, Any] | None, missing: Any = None) -> _Namespace:
    return _Namespace(values or {}, missing)


Evaluator = Callable[[Mapping[str, Any]], Any]


def _compile(node: ast.expr) -> Evaluator:
    """The checked tree as nested closures, built once per filter: evaluating one then costs a
    call per node, not a walk that matches every node's shape again (the dispatcher evaluates
    the workflow's filters for every message). Still no eval: each closure is written here."""
    match node:
        case ast.BoolOp(op=ast.And(), values=values):
            parts = [_compile(v) for v in values]
            return lambda facts: all(part(facts) for part in parts)
        case ast.BoolOp(op=ast.Or(), values=values):
            parts = [_compile(v) for v in values]
            return lambda facts: any(part(facts) for part in parts)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            inner = _compile(operand)
            return lambda facts: not inner(facts)
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as value)):
            negative = -value  # _check lets only numbers be negated
            return lambda facts: negative
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            first = _compile(left)
            steps = [
                (_COMPARE[type(op)], _compile(comparator))
                for op, comparator in zip(ops, comparators, strict=True)
            ]

            def compare(facts: Mapping[str, Any]) -> bool:
                current = first(facts)
                for test, comparator in steps:
                    right = comparator(facts)
                    a, b = _ranked(current, right)
                    if not test(a, b):
                        return False
                    current = right
                return True

            return compare
        case ast.Constant(value=value):
            return lambda facts: value
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            items = [_compile(e) for e in elts]
            return lambda facts: [item(facts) for item in items]
        case ast.Name(id=name):
            return lambda facts: facts.get(name)
        case ast.Attribute(value=ast.Name(id=space), attr=attr):

            def attribute(facts: Mapping[str, Any]) -> Any:
                holder = facts.get(space)
                return holder.get(attr) if isinstance(holder, _Namespace) else None

            return attribute
        case ast.Call(func=ast.Name(id="len"), args=[arg]):
            argument = _compile(arg)

            def length(facts: Mapping[str, Any]) -> int:
                value = argument(facts)
                return 0 if value is None else len(value)

            return length
    raise EvaluationError(f"cannot evaluate {type(node).__name__}")  # _check let it through: a bug


# Each urgency's rank by its text (an Urgency is its text): what `Urgency(x).rank` gives, without
# building the enum twice for every comparison the workflow's filters make for every message.
_RANKS: dict[str, int] = {u.value: u.rank for u in Urgency}


def _ranked(a: Any, b: Any) -> tuple[Any, Any]:
    """Urgencies compare by rank; a list of urgencies (for `in`) is left as it is."""
    if isinstance(a, Urgency) or isinstance(b, Urgency):
        if isinstance(b, list):
            return str(a), [str(x) for x in b]
        if isinstance(a, list):
            return [str(x) for x in a], str(b)
        try:
            rank_a, rank_b = _RANKS.get(a), _RANKS.get(b)
        except TypeError:  # a value that cannot be a dict's key is no urgency either
            rank_a = rank_b = None
        if rank_a is None or rank_b is None:
            return str(a), str(b)
        return rank_a, rank_b
    return a, b
