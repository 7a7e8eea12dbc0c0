"""A task that fails its first run and retries after 11 minutes.

Prefect 1.4.1 waits in-process for a retry due within 10 minutes
(engine/cloud/task_runner.py); a later one leaves the task run Retrying and
the process exits, so the agent must start the flow again when it is due.
"""

import datetime

import prefect
from prefect import Flow, task
from prefect.storage import Module


@task(max_retries=1, retry_delay=datetime.timedelta(minutes=11))
def flaky():
    attempt = prefect.context.get("task_run_count", 1)
    prefect.context.logger.info("flaky: attempt %d", attempt)
    if attempt < 2:
        raise RuntimeError("first attempt fails on purpose")
    return attempt


with Flow("retry-later", storage=Module(__name__)) as flow:
    flaky()
