"""Lands the raw orders the dbt models read."""
print("landed")
