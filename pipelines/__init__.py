"""Orchestration of the DVC stages (the Prefect flow lives here)."""
