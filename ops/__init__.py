"""What the stages and the Prefect flow share (no stage lives here; nothing here is installed).

- ``params``: params.yaml and the profiles; ``outputs``: every fixed path and environment variable
  name of the pipeline, and the metrics writer;
- ``dvc_stages``: dvc.yaml read as data (stage order, each stage's params);
- ``tracking`` and ``registry``: one MLflow run per stage execution, the model registry;
- ``fetch/``: downloads (resumable, checksummed) and safe extraction; ``masks/``: the masks
  stage's worker pool, its Dask variant and its run statistics;
- ``project_copy``: a checkout's sources copied into a scratch project (tests, benchmarks).

Commands run by hand are in ``tools/``.
"""
