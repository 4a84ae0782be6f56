"""Deployment: the scale-out stack (Celery, PostgreSQL, MLflow with auth), its environment, and
the local dashboards.
"""
