"""Daily operations: the forecast and its monitoring, drift, the day's report, why to retrain,
and the `make run` / replay drivers.
"""
