"""What the stages, the Prefect flow and the commands share, and the commands themselves; no stage lives here.

``common`` (params, profiles, atomic writes, metrics files), ``tracking`` and ``registry`` (MLflow),
``fetch*`` (downloads), ``stage_order`` (the pipeline's stages in order); commands run as
``python -m ops.<name>``: ``use_profile``, ``compare_runs``, ``collect_ablation``, ``obfuscate_example``.
``cli`` is the ``privobfnet`` console script (obfuscate / score / attributes); ``model_source`` resolves
its ``--model`` (a checkpoint path or an MLflow model URI).
"""
