"""The engine behind the APIs: runs and their task graphs, clusters, warehouses and the stored state; knows nothing of HTTP."""
