"""Airflow-only helpers: `env` (the environment a standalone Airflow needs), `tasks` (operators the DAGs
share), `assets` (the Assets DAGs produce and schedule on). Nothing outside dags/ and tests imports them."""
