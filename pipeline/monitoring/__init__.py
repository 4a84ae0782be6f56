"""The production model's day: its forecast for every ticker, how it did, and drift.

The daily DAG's forecast and monitor steps (below orchestration, which runs them; above
lifecycle, whose production version they use).
"""
