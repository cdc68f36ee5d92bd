"""PrivObfNet's networks: backbones (tiny, ResNet-38/50/101, EfficientNet-Lite0), heads, the two-model ensemble."""

from privobfnet.models.backbones import build_backbone
from privobfnet.models.ensemble import ModelOutput, PrivObfNet, build_model, load_ensemble

__all__ = ["ModelOutput", "PrivObfNet", "build_backbone", "build_model", "load_ensemble"]
