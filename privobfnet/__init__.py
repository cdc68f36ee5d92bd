"""PrivObfNet: weakly supervised privacy-attribute segmentation (Tay et al., WACV 2024).

The library is pure: it takes arrays, tensors and config objects and returns values. Only
``privobfnet.data`` reads data-set files (readers) and it never tracks or schedules anything.
"""

__version__ = "0.1.0"
