"""A task that sleeps for ten minutes, for cancelling or evicting mid-run.

The sleep runs in short steps so that the runner's interrupt (SIGINT from its
cancellation thread) lands between them.
"""

import time

import prefect
from prefect import Flow, task
from prefect.storage import Module


@task
def before():
    prefect.context.logger.info("before: done")


@task
def nap(_):
    prefect.context.logger.info("nap: sleeping")
    for _ in range(600):
        time.sleep(1)


@task
def after(_):
    prefect.context.logger.info("after: done")


with Flow("sleeps", storage=Module(__name__)) as flow:
    after(nap(before()))
