# One image for every service of the production topology (Airflow components, Celery
# workers, MLflow, the model-serving API): the same lock as the embedded stack. The serving
# process runs as `python -m dslc.serving --model models:/<name>/<version> --port 8000`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=0 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    DSLC_HOME=/opt/dslc
RUN useradd --create-home --uid 50000 --gid 0 dslc \
    && mkdir -p /opt/airflow /opt/dslc /opt/project \
    && chown -R 50000:0 /opt/airflow /opt/dslc /opt/project
WORKDIR /opt/project
COPY requirements.txt ./
RUN pip install --no-cache-dir uv==0.13.9 \
    && uv pip install --system --no-cache --compile-bytecode -r requirements.txt
COPY --chown=50000:0 pyproject.toml README.md ./
COPY --chown=50000:0 include ./include
COPY --chown=50000:0 dags ./dags
COPY --chown=50000:0 plugins ./plugins
RUN uv pip install --system --no-cache --no-deps -e .
USER 50000
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/project/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/project/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
EXPOSE 8000 8080 5000
