"""Daily operations: the day's report, why to retrain, and the `make run` / replay drivers."""
