"""Legal moves of a state machine as bitmasks: what every ``_set_state`` checks, once per move.

States are ``IntEnum`` members numbered from 0; ``move_masks`` turns a table of legal moves into
a tuple, indexed by the state a move leaves, of bitmasks of the states it may reach. The check
``masks[old] >> new & 1`` is plain int arithmetic (an enum member is hashed by a Python-level
``__hash__``, so a dict or set lookup per move would cost a Python call on the request path).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


def move_masks(moves: Mapping[enum.IntEnum, Iterable[enum.IntEnum]]) -> tuple[int, ...]:
    masks = [0] * (max(int(s) for s in moves) + 1)
    for state, targets in moves.items():
        for target in targets:
            masks[state] |= 1 << target
    return tuple(masks)
