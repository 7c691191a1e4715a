-- MLflow's backend store and its basic-auth users live beside Airflow's metadata DB on the
-- same server (as on `dslc up --distributed`), so users survive a recreated container.
CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE mlflow_auth OWNER airflow;
