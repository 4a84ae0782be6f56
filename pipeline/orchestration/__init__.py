"""What the DAGs run: the step sequence, the carry between steps, the task wrapper, and running
the DAGs through Airflow (or without it).
"""
