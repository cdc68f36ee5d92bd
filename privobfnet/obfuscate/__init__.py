"""The obfuscation tool's library: hide chosen privacy attributes in an image, and check it.

- ``detect``: OCR text lines, face boxes and person masks (the masks stage's backends), and OCR
  recognition for the red team;
- ``regions``: Model-Image's per-attribute masks snapped to the detector regions of their mask type;
- ``styles``: solid (default), coarse pixelation, blur;
- ``codec``: upright decoding, metadata-free encoding, output paths;
- ``engine``: model loading, ``Obfuscator`` (one image) and the leak rules; the preferences are
  ``privobfnet.config.Preferences``, the same object as the redact stage's params;
- ``batch``: one file in, one file out or none (fail-closed), with its report record; many files
  over worker processes.

The command line is ``privobfnet obfuscate`` (``privobfnet/cli.py``).
"""

from privobfnet.config import Preferences, parse_preferences
from privobfnet.obfuscate.batch import STEPS, obfuscate_file
from privobfnet.obfuscate.codec import check_outputs, decode_upright, encode, output_path
from privobfnet.obfuscate.detect import Detectors, TextReader, build_detectors
from privobfnet.obfuscate.engine import (
    LoadedModel,
    Obfuscator,
    Outcome,
    PreferencesError,
    build_typer,
    detector_kinds,
    find_leaks,
    load_model,
    snap_rules,
)
from privobfnet.obfuscate.regions import (
    Detections,
    HiddenArea,
    Region,
    SnapRules,
    hidden_area,
    snap_attribute,
)
from privobfnet.obfuscate.styles import BLUR_WARNING, STYLES, apply_style, block_size

__all__ = [
    "BLUR_WARNING",
    "STEPS",
    "STYLES",
    "Detections",
    "Detectors",
    "HiddenArea",
    "LoadedModel",
    "Obfuscator",
    "Outcome",
    "Preferences",
    "PreferencesError",
    "Region",
    "SnapRules",
    "TextReader",
    "apply_style",
    "block_size",
    "build_detectors",
    "build_typer",
    "check_outputs",
    "decode_upright",
    "detector_kinds",
    "encode",
    "find_leaks",
    "hidden_area",
    "load_model",
    "obfuscate_file",
    "output_path",
    "parse_preferences",
    "snap_attribute",
    "snap_rules",
]
