"""A flow whose middle task sleeps for ten minutes on its first attempt only.

The first attempt leaves a marker file in the folder that the run's
environment names (TESTFLOWS_MARKER_DIR), so a fresh attempt of the same run,
in a new pod, finds it and finishes at once: a pod evicted mid-task can be
followed by one that ends Success.
"""

import os
import time

import prefect
from prefect import Flow, task
from prefect.storage import Module


@task
def before():
    prefect.context.logger.info("before: done")


@task
def nap_once(_):
    marker = os.path.join(os.environ["TESTFLOWS_MARKER_DIR"], prefect.context.flow_run_id)
    if os.path.exists(marker):
        prefect.context.logger.info("nap_once: a fresh attempt, no nap")
        return
    open(marker, "w").close()
    prefect.context.logger.info("nap_once: first attempt, sleeping")
    for _ in range(600):
        time.sleep(1)


@task
def after(_):
    prefect.context.logger.info("after: done")


with Flow("slow-once", storage=Module(__name__)) as flow:
    after(nap_once(before()))
