"""Synthetic customers: a population spec (spec.py), calibrated on the Online Retail data (catalogue.py),
generated deterministically by seed (population.py) and checked against the real customers (privacy.py).

Stored through ``TwinService.ingest_records(..., synthetic=True)``: every twin made is labelled synthetic.
"""
