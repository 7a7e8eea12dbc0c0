"""Prefect 1 flows the test bed runs with Prefect's own flow runner.

Each module holds one flow stored as Module storage under its own module
name, so `prefect execute flow-run` imports it from PYTHONPATH (test/flows).
`python -m testflows.serialize` prints every flow as Prefect registers it.
"""

FLOWS = [
    "testflows.three_tasks",
    "testflows.raises",
    "testflows.retry_later",
    "testflows.sleeps",
    "testflows.hard_exit",
    "testflows.memory_hog",
    "testflows.slow_once",
]
