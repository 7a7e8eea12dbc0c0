"""A task that ends the process at once with status 3, reporting nothing."""

import os

from prefect import Flow, task
from prefect.storage import Module


@task
def bail():
    os._exit(3)


with Flow("hard-exit", storage=Module(__name__)) as flow:
    bail()
