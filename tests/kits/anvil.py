"""The local chain of the tests: how the ``anvil`` fixtures of tests/conftest.py start it.

A test asks for ``anvil`` and gets a fresh node (chain id 31337), because many tests change
the chain itself: they pause mining, set the next base fee, reorg blocks. A module whose
tests only add transactions of their own senders shares one node instead, by saying so at
module level (the fixture reads it, as pytest's ``request.module`` examples do)::

    ANVIL_PER_MODULE = True   # one node for every test of this module
    ANVIL_AUTOMINE = False    # the node mines only on evm_mine (default: on every tx)

A module-scoped fixture of such a module asks for ``module_anvil``: the same node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from airlock.sim.anvil import Anvil, start_anvil

CHAIN_ID = 31337


def per_module(module: ModuleType | None) -> bool:
    """Whether ``module`` shares one node between its tests (``ANVIL_PER_MODULE``)."""
    return bool(getattr(module, "ANVIL_PER_MODULE", False))


@contextlib.contextmanager
def node_for(module: ModuleType | None) -> Iterator[Anvil]:
    """A running node as ``module`` wants it; stopped when the block ends."""
    with start_anvil(chain_id=CHAIN_ID) as node:
        if not getattr(module, "ANVIL_AUTOMINE", True):
            node.rpc("evm_setAutomine", [False])  # keep transactions pending: replaceable
        yield node
