"""Evaluation: the model against naive and the classical baselines on the same days, and the
walk-forward backtest.
"""
