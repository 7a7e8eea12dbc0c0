"""A task that raises: the runner ends the flow run Failed and exits 0."""

from prefect import Flow, task
from prefect.storage import Module


@task
def fine():
    return 1


@task
def broken(x):
    raise ValueError("this task always fails (x=%d)" % x)


with Flow("raises", storage=Module(__name__)) as flow:
    broken(fine())
