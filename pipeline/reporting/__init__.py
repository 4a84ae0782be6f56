"""The day's report page (page.py) and the Airflow UI plugin that serves it (plugin.py)."""
