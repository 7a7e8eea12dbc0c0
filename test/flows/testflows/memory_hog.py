"""A task that allocates memory step by step past any small limit.

It stops at 4 GiB so that a run without a limit cannot exhaust the machine.
"""

import time

from prefect import Flow, task
from prefect.storage import Module


@task
def hog():
    held = []
    for _ in range(4096 // 16):
        held.append(bytearray(16 << 20))
        time.sleep(0.02)
    return len(held)


with Flow("memory-hog", storage=Module(__name__)) as flow:
    hog()
