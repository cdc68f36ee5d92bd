"""PrivObfNet: weakly supervised privacy-attribute segmentation (Tay et al., WACV 2024), and a tool
that hides the attributes a user chooses in an image.

The library reads and writes only its own formats, never names a pipeline path and never tracks:
it takes config objects, arrays, tensors and the paths it is given, and returns values. DVC stages
(``stages/``), the Prefect flow (``pipelines/``) and their support (``ops/``: fixed paths, MLflow,
downloads) live outside it. Its one console script is ``privobfnet`` (``privobfnet.cli``, also
``python -m privobfnet``), which imports MLflow only to fetch a ``models:/`` URI.
"""

__version__ = "0.2.0"
