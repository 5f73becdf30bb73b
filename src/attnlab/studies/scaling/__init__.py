"""Scaling laws measured on this machine: `attnlab scaling` (sweep.py, fit.py, report.py)."""
