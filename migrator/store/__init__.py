"""The SQLite checkpoint store: schema, transitions, and the queries reports read."""

from migrator.store.schema import TERMINAL, State
from migrator.store.store import Change, Item, Move, Record, Run, Seen, Store

__all__ = ["TERMINAL", "Change", "Item", "Move", "Record", "Run", "Seen", "State", "Store"]
