"""Prints how many rows the load wrote."""
import sys

print(sys.argv[1:])
