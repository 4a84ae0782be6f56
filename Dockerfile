# One image for every service of docker-compose.yaml: Airflow (api-server, scheduler,
# dag-processor, triggerer, Celery workers), the MLflow server and the model server.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2 \
    GX_ANALYTICS_ENABLED=False MLFLOW_DISABLE_TELEMETRY=true \
    AIRFLOW_HOME=/opt/airflow PIPELINE_HOME=/app
WORKDIR /app
COPY requirements.lock pyproject.toml ./
# The same lock and installer as `make install`: pip bootstraps uv, uv installs the lock.
RUN pip install "$(grep -m1 '^uv==' requirements.lock)" \
    && uv pip install --system -r requirements.lock
COPY . .
RUN uv pip install --system --no-deps -e . \
    && useradd --create-home --uid 1000 pipeline \
    && mkdir -p /shared /opt/airflow && chown pipeline /shared /opt/airflow
# .dockerignore keeps .venv, state/, mlruns/ and .env out of the image
USER pipeline
