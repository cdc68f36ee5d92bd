"""DVC stages: thin modules that do the I/O and tracking around the pure ``privobfnet`` library.

Each ``stages/<name>.py`` has ``main(cfg) -> dict`` (the metrics it wrote) and runs as
``python -m stages.<name>`` from the installed package.
"""
