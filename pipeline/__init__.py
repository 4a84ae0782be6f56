"""The daily price-forecasting pipeline (see README.md)."""

from pipeline import quiet

quiet.install()  # TensorFlow's start-up notices off the console, wherever it is imported
