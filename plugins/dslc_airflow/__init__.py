"""Airflow-side pieces of the project: the lake through Airflow connections, and sensors.

Importing this package is cheap (no pandas, no provider hooks): DAG files import it at parse.
"""
