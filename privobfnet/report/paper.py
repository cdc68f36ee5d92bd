"""The numbers the paper reports (Tay et al., WACV 2024), printed beside ours by the report stage."""

from __future__ import annotations

# Table 2: VISPR privacy score, (L1 error, Pearson, Spearman); None where the paper prints "-".
TABLE2_PRIVACY_SCORE: dict[str, tuple[float, float | None, float | None]] = {
    "AP-PR": (0.66, None, None),
    "PR-CNN": (0.64, None, None),
    "PrivAttNet_MLC": (0.44, 0.83, 0.76),
    "PrivNet": (0.43, 0.83, 0.78),
    "PrivAttNet": (0.40, 0.87, 0.84),
    "PrivObfNet": (0.09, 0.88, 0.86),
}

# Table 3: VISPR attribute accuracy (%) for attributes with > 300 training images.
TABLE3_ATTRIBUTE_ACCURACY: dict[str, float] = {
    "Safe": 88.1,
    "Age": 91.7,
    "Weight": 85.1,
    "Height": 85.1,
    "Gender": 93.6,
    "Eye": 87.3,
    "Hair": 93.1,
    "Face": 90.4,
    "Face (2nd row)": 87.2,
    "Semi Nude": 96.2,
    "Race": 93.4,
    "Color": 94.2,
    "Full Name": 94.6,
    "Occupation": 92.5,
    "Occasion": 96.8,
    "Culture": 95.7,
    "Sports": 97.3,
    "Opinion": 97.1,
    "Personal": 96.9,
    "Social": 92.9,
    "Professional": 94.7,
    "Spectator": 93.2,
    "Viewers": 97.1,
    "Landmark": 91.3,
    "Address": 92.7,
    "Date Time": 93.7,
}
TABLE3_MEAN_ACCURACY = 92.8

# Table 4: ablation on VISPR, (Pearson, Spearman), by row label (the rows: privobfnet.report.rows)
TABLE4_ABLATION: dict[str, tuple[float, float]] = {
    "Attention (Image)": (0.79, 0.76),
    "+ Priv": (0.82, 0.79),
    "+ Attr": (0.82, 0.80),
    "+ Priv + Attr": (0.85, 0.83),
    "Attention (Image + Cropped) + Priv + Attr": (0.88, 0.86),
}

# Table 5: pseudo-label -> DeepLabV2 mIoU (%), (supervision, VOC test, COCO val).
TABLE5_MIOU: dict[str, tuple[str, float | None, float | None]] = {
    "EDAM": ("I+S", 70.6, None),
    "EPS++": ("I+S", 72.4, 42.4),
    "DRS": ("I+S", 71.4, None),
    "L2G": ("I+S", 71.7, 44.2),
    "RCA": ("I+S", 72.8, 36.8),
    "IRN": ("I", 64.8, 41.4),
    "CDA": ("I", 66.8, 33.2),
    "RIB": ("I", 68.6, 43.8),
    "URN": ("I", 69.7, 40.7),
    "MCTformer": ("I", 71.6, 42.0),
    "BECO": ("I", 71.8, 45.1),
    "PrivObfNet": ("I+S", 71.5, 43.9),
}

# VOC 2012 val mIoU (%) where a method's own paper gives it (PrivObfNet's Table 5 gives test only):
# L2G (Jiang et al., CVPR 2022, Table 5: val 72.1, test 71.7)
VOC_VAL_MIOU: dict[str, float] = {"L2G": 72.1}
