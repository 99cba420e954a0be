"""The SQLite checkpoint store: schema, transitions, and the queries reports read."""

from migrator.store.schema import TERMINAL, State
from migrator.store.store import (
    Change,
    Item,
    Mark,
    Move,
    Part,
    PartMove,
    Reached,
    Record,
    Run,
    RunCost,
    Seen,
    Store,
)

__all__ = [
    "TERMINAL",
    "Change",
    "Item",
    "Mark",
    "Move",
    "Part",
    "PartMove",
    "Reached",
    "Record",
    "Run",
    "RunCost",
    "Seen",
    "State",
    "Store",
]
