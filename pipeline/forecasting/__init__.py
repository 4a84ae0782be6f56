"""The model: the Keras network, the self-contained pyfunc that serves it, its intervals, and
the Optuna search and final fit that make it.
"""
