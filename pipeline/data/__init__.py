"""The data steps: ingest a day's bars, validate them, keep the curated table, make the
features (and pool them for the universe model).
"""
