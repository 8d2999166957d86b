"""Great Expectations for the lock gate, set up once per process.

Importing GX costs 4-5 s (its package imports scipy, altair, its data context...): a process
that locks more than once (the web page, a DAG worker, the tests) pays that once, and
:func:`preload` starts it in a background thread so that it overlaps with the work before the
gate (materialising the snapshot is mostly Polars, which releases the GIL). One ephemeral
context, one pandas data source, one dataframe asset and one batch definition serve every
validation; each run brings its own dataframe and expectation suite.

GX is imported only here, so the rest of the platform never pays its import time.
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import polars as pl

COLUMN_ARGS = ("column", "column_A", "column_B")
FROM_SNAPSHOT = "_from_snapshot"
"""The suffix of the value-set expectations with :func:`_plain_lists` (see there)."""
VALUE_SET_EXPECTATIONS = (
    "ExpectColumnValuesToBeInSet",
    "ExpectColumnValuesToNotBeInSet",
    "ExpectColumnDistinctValuesToBeInSet",
    "ExpectColumnDistinctValuesToContainSet",
    "ExpectColumnDistinctValuesToEqualSet",
)
_PLAIN = frozenset({str, int, float, bool, type(None)})

Spec = tuple[str, dict[str, Any]]
"""An expectation as the suite names it: (snake_case name, arguments)."""


@dataclass(frozen=True)
class Session:
    gx: Any
    batches: Any
    """The batch definition: a whole pandas dataframe, given per run."""
    classes: dict[str, type]
    """Expectation classes by the suite's snake_case name, where they differ from GX's own."""
    validator: type
    """GX's validator of a batch definition (``great_expectations.validator.v1_validator``)."""
    busy: threading.Lock
    """One validation at a time: the data source and its asset are shared."""


_STARTING = threading.Lock()
_SESSION: list[Session] = []


def session() -> Session:
    """The process's GX session, started on first use (by whichever thread gets here first)."""
    with _STARTING:
        if not _SESSION:
            _SESSION.append(_start())
        return _SESSION[0]


def preload() -> threading.Thread:
    """Import GX and set up its session in the background; :func:`session` waits for it."""
    thread = threading.Thread(target=_warm, name="gx-import", daemon=True)
    thread.start()
    return thread


def _warm() -> None:
    """The background start: a failure (GX not installed) is left to the gate's own
    :func:`session` call, which raises it again where the lock reports it."""
    with suppress(Exception):
        session()


def _start() -> Session:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.validator.v1_validator import Validator

    # GX fingerprints every pandas batch under this size (md5 of pandas' hash of every row) for
    # its batch markers and data docs, which the gate never reads: a lock's files carry their
    # sha256 in its manifest. ~0.1-0.15 s of a 5,000-subject lock's thirteen batches.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("tract-lock-staged").add_dataframe_asset("staged")
    classes = {}
    for name in VALUE_SET_EXPECTATIONS:
        fast = _plain_lists(getattr(gx.expectations, name))
        classes[fast.expectation_type.removesuffix(FROM_SNAPSHOT)] = fast  # type: ignore[attr-defined]
    return Session(
        gx,
        asset.add_batch_definition_whole_dataframe("whole"),
        classes,
        Validator,
        threading.Lock(),
    )


class ValueSet(list):  # type: ignore[type-arg]
    """A value set of plain values (text, numbers, None), made for one validation and never
    changed: a copy of it is itself."""

    def __copy__(self) -> ValueSet:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ValueSet:
        return self


def _value_sets(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with a value set of plain values as a :class:`ValueSet`."""
    values = args.get("value_set")
    if type(values) is list and set(map(type, values)) <= _PLAIN:
        return args | {"value_set": ValueSet(values)}
    return args


def _plain_lists(stock: type) -> type:
    """``stock`` (a value-set expectation) unchanged (same metric, same success rule), except
    how pydantic copies a list of plain values out of it.

    GX rebuilds an expectation's configuration from its pydantic model each time it reads one
    of its arguments, some 70 times per expectation and run, and pydantic copies a list element
    by element in Python: for the lock suite's value sets read from the snapshot (every subject,
    every tract: thousands of ids) that was 4-5 s of a 5,000-subject lock. A list of plain
    strings, numbers and None comes out of pydantic as an equal list of the same objects: it is
    handed out as it is (a :class:`ValueSet`, which GX's deep copies of the arguments also
    leave as it is: another 0.1-0.2 s of a 5,000-subject lock)."""
    slow = stock._get_value.__func__  # type: ignore[attr-defined]

    def _get_value(cls: type, v: Any, *args: Any, **kwargs: Any) -> Any:
        whole = not args and not kwargs.get("include") and not kwargs.get("exclude")
        if whole and type(v) is ValueSet:
            return v
        return slow(cls, v, *args, **kwargs)

    def body(namespace: dict[str, Any]) -> None:
        namespace["_get_value"] = classmethod(_get_value)
        namespace["__module__"] = __name__
        namespace["__doc__"] = stock.__doc__

    return types.new_class(stock.__name__ + "FromSnapshot", (stock,), exec_body=body)


def suite_name(kind: str) -> str:
    """The suite's name for an expectation type GX reports."""
    return kind.removesuffix(FROM_SNAPSHOT)


def _columns(args: dict[str, Any]) -> set[str]:
    named = {args[k] for k in COLUMN_ARGS if k in args}
    return named | set(args.get("column_list", ()))


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def to_pandas(frame: pl.DataFrame) -> Any:
    """``frame`` for GX's pandas engine, as Polars converts it except that text stays pyarrow
    strings (``pd.ArrowDtype``): pandas' own string dtype tests membership (``isin``: every
    value-set expectation) by boxing each value of the set in Python, pyarrow in one call."""
    import pandas as pd
    import pyarrow as pa

    data = frame.to_pandas()
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return data.astype({name: pd.ArrowDtype(pa.large_string()) for name in text})


@contextmanager
def gate() -> Iterator[Callable[[pl.DataFrame, list[Spec], str], Any]]:
    """``run(frame, specs, result_format)``: one GX validation of the expectations ``specs``
    on ``frame`` (only the columns they name go to pandas), its suite validation result."""
    current = session()

    def run(frame: pl.DataFrame, specs: list[Spec], result_format: str) -> Any:
        wanted = set().union(*(_columns(args) for _, args in specs))
        data = to_pandas(frame.select(c for c in frame.columns if c in wanted))
        expectations = [
            (current.classes.get(kind) or getattr(current.gx.expectations, _camel(kind)))(
                **_value_sets(args)
            )
            for kind, args in specs
        ]
        plan = current.gx.ExpectationSuite(name="tract-lock-gate", expectations=expectations)
        # What Batch.validate and ValidationDefinition.run both do, without building the
        # batch a second time, nor keeping results in the context's store for the life of the
        # process
        validator = current.validator(
            batch_definition=current.batches,
            batch_parameters={"dataframe": data},
            result_format=result_format,
        )
        return validator.validate_expectation_suite(plan)

    with current.busy:
        yield run
