"""Three tasks that pass a value along and succeed, each logging a line."""

import prefect
from prefect import Flow, task
from prefect.storage import Module


@task
def extract():
    prefect.context.logger.info("extract: read 3 rows")
    return [1, 2, 3]


@task
def transform(rows):
    prefect.context.logger.info("transform: doubled %d rows", len(rows))
    return [r * 2 for r in rows]


@task
def load(rows):
    prefect.context.logger.info("load: total is %d", sum(rows))


with Flow("three-tasks", storage=Module(__name__)) as flow:
    load(transform(extract()))
