"""What a local task process puts on its sys.path the way a Databricks runtime puts
/databricks/python_shell there: the `dbruntime` package (see dbruntime/__init__.py)."""
