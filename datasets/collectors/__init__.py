"""Collectors: measure on the machine they run on and write rows to the store."""
