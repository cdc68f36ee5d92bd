"""PrivObfNet's networks.

- ``backbones``: every trunk behind one factory (``build_backbone``);
- ``layers``: shared building blocks; ``inputs``: resizing and normalisation of model inputs;
- ``heads``: the CAM head with its mask weighting, the attention features, the attribute and
  privacy heads; ``privobfnet``: one network of the ensemble (Model-Image or Model-Cropped);
- ``crops``: Model-Cropped's crop boxes and the global CAM cut at them;
- ``deeplabv2``: the segmentation network trained on the pseudo-labels;
- ``checkpoints``: the checkpoint formats of both.
"""

from privobfnet.models.backbones import build_backbone
from privobfnet.models.privobfnet import ModelOutput, PrivObfNet, build_model

__all__ = ["ModelOutput", "PrivObfNet", "build_backbone", "build_model"]
