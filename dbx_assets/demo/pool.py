"""The demo's instance pool: a small pool of drivers kept warm, which the demo workflow's job
cluster names by name (resolved to its id at deploy), as production teams cut cluster start."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the definitions import this module for the pool's name only: no SDK at load
    from databricks.sdk import WorkspaceClient

DEMO_POOL_NAME = "dbx-assets-demo"
# One idle instance (a run takes it, the pool starts the next); a few at most at once.
MIN_IDLE_INSTANCES = 1
MAX_CAPACITY = 4
IDLE_AUTOTERMINATION_MINUTES = 10


def ensure_demo_pool(client: WorkspaceClient) -> str:
    """The demo pool's id, creating the pool if it does not exist (an existing one is left as it is)."""
    for pool in client.instance_pools.list():
        if pool.instance_pool_name == DEMO_POOL_NAME and pool.instance_pool_id:
            return pool.instance_pool_id
    created = client.instance_pools.create(
        instance_pool_name=DEMO_POOL_NAME,
        node_type_id=client.clusters.select_node_type(),  # the smallest the workspace offers
        min_idle_instances=MIN_IDLE_INSTANCES,
        max_capacity=MAX_CAPACITY,
        idle_instance_autotermination_minutes=IDLE_AUTOTERMINATION_MINUTES,
    )
    assert created.instance_pool_id, "instance-pools/create answered no instance_pool_id"
    return created.instance_pool_id
