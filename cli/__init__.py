"""The `edgefuse` command line (see main.py)."""
