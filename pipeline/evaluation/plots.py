"""The evaluation's figures (matplotlib on the file-only backend: tasks have no display)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (tasks and servers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_forecasts(table: pd.DataFrame) -> Any:
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(table["for_date"], table["actual"], label="actual close", color="black", lw=1)
    top.plot(table["for_date"], table["model"], label="model forecast", lw=1)
    if "production" in table:
        top.plot(table["for_date"], table["production"], label="production forecast", lw=1)
    top.set_title("Next-day close on held-out test days")
    top.legend()
    bottom.plot(table["for_date"], table["model"] - table["actual"], label="model", lw=0.8)
    bottom.plot(
        table["for_date"], table["naive"] - table["actual"], label="naive", lw=0.8, alpha=0.6
    )
    bottom.axhline(0, color="grey", lw=0.5)
    bottom.set_title("Residuals (forecast - actual), USD")
    bottom.legend()
    fig.tight_layout()
    return fig


def plot_fan(table: pd.DataFrame) -> Any:
    """The test period's forecast fan (80 % and 95 % intervals) against the realised close."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    when = table["for_date"]
    ax.fill_between(when, table["lower_95"], table["upper_95"], alpha=0.2, label="95 % interval")
    ax.fill_between(when, table["lower_80"], table["upper_80"], alpha=0.35, label="80 % interval")
    ax.plot(when, table["model"], lw=0.8, label="forecast (median)")
    if "har_lower_80" in table:  # the strongest classical baseline, for comparison
        ax.plot(when, table["har_lower_80"], color="tab:red", lw=0.6, ls="--", label="HAR 80 %")
        ax.plot(when, table["har_upper_80"], color="tab:red", lw=0.6, ls="--")
    ax.plot(when, table["actual"], color="black", lw=1, label="realised close")
    ax.set_title("Next-day forecast distribution on held-out test days")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_pit(table: pd.DataFrame) -> Any:
    """PIT histogram: flat when calibrated; U-shaped when intervals are too narrow."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(table["pit"], bins=10, range=(0, 1), edgecolor="white")
    ax.axhline(len(table) / 10, color="black", lw=0.8, ls="--", label="calibrated")
    ax.set_xlabel("forecast CDF at the realised return (PIT)")
    ax.set_title("Calibration on held-out test days")
    ax.legend()
    fig.tight_layout()
    return fig
