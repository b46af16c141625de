"""Work released in several threads at the same moment, as instances starting or writing at once would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def all_at_once(work: Callable[[int], Any], n: int) -> list[Any]:
    """``work(i)`` for i in range(n), in n threads released together by a barrier: every result, in order.
    Fails (listing the first errors) if any of them raised."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected, and asserted on below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    return results
