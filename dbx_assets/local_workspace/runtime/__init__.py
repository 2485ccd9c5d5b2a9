"""Local PySpark "clusters" for the embedded workspace.

A cluster is one long-lived driver process holding a JVM (SparkContext + SparkSession);
each task runs in its own Python process that attaches to that JVM over py4j. The server
only needs `LocalCluster` and `RunningTask` from `cluster.py` (which imports no Spark).
"""

from .cluster import LocalCluster, RunningTask

__all__ = ["LocalCluster", "RunningTask"]
