"""The one early-stop forward pass: end a forward once a hook has read what it needs.

Reading layer 5 of a 30-layer model need not run layers 6 to 29. A hook that has stored its
values calls :func:`stop_forward` (or is :func:`stop_forward`), which raises
:class:`StopForward`; the forward is run inside :func:`stoppable`, which swallows it::

    def keep(act, hook):
        seen[hook.name] = act[:, -1].detach()
        stop_forward()

    with stoppable():
        model.bridge.run_with_hooks(ids, fwd_hooks=[(name, keep)], return_type=None)

Works the same for TransformerLens hook functions and PyTorch module hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

__all__ = ["StopForward", "stop_forward", "stoppable"]


class StopForward(Exception):
    """Raised in a hook once the values needed are read; caught by :func:`stoppable`."""


def stop_forward(*_args: Any, **_kwargs: Any) -> NoReturn:
    """End the running forward pass (usable itself as a hook: it ignores its arguments).

    Raises:
        StopForward: Always.
    """
    raise StopForward


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """Run a forward pass that a hook may end early with :func:`stop_forward`."""
    with contextlib.suppress(StopForward):
        yield
