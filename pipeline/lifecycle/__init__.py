"""The model's life in MLflow: tracking, the registry, the promotion gate, promotion and
rollback, retention.
"""
