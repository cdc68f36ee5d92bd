"""A line typer learned from image labels only (multiple-instance learning).

Each line is a bag of hashed sparse features: character 2-4-grams of its text, 2-5-grams of its
shape (digits -> 9, capitals -> A, small letters -> a), its words and word shapes, the words of
the line above it (label words such as "Ship to:" on their own line), the words and shapes of its
neighbours on the same row (the pieces of a line the detector split), and buckets of its length,
digit share and height in the image. A linear model gives each line a probability per text
attribute; an image's probability is the noisy-OR over its lines, 1 - prod(1 - p_line), and the
image's label set supervises it (binary cross-entropy). No pixel or line label is used.

Two models are trained the same way: ``learned`` on these features alone, ``both`` with the
recognizers' entity scores of the line added as features, so it learns from image labels how far to
trust each format. The decision threshold is chosen on another split by image labels again (the image-level macro F1
of the max over lines); scores are reported calibrated to it: ``sigmoid(z - logit(threshold))``,
so 0.5 is the decision boundary as for the recognizers.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from privobfnet.text.lines import Line
from privobfnet.text.recognizers import Context, context_of

N_FEATURES = 2**16
FORMAT = "privobfnet-line-typer/2"


def _shape(text: str) -> str:
    out = re.sub(r"\d", "9", text)
    out = re.sub(r"[^\W\d_]", lambda m: "A" if m.group().isupper() else "a", out)
    return re.sub(r"(.)\1{3,}", r"\1\1\1", out)


def _ngrams(text: str, low: int, high: int, prefix: str) -> list[str]:
    return [
        f"{prefix}{text[i : i + n]}" for n in range(low, high + 1) for i in range(len(text) - n + 1)
    ]


def feature_names(line: Line, context: Context, image_height: int) -> list[str]:
    """The named features of one line (hashed by ``features``)."""
    text = " ".join(line.text.split())
    low = text.lower()
    tokens = re.findall(r"\w+", low)
    names = ["bias"]
    names += _ngrams(f" {low} ", 2, 4, "c:")
    names += _ngrams(f" {_shape(text)} ", 2, 5, "s:")
    names += [f"w:{t}" for t in tokens] + [f"ws:{_shape(t)}" for t in re.findall(r"\S+", text)]
    names += [f"p:{t}" for t in re.findall(r"\w+", context.above.lower())[:4]]
    for side, other in (("l", context.left), ("r", context.right)):  # pieces of a split line
        names += [f"{side}:{t}" for t in re.findall(r"\w+", other.lower())[-2:]]
        names += [f"{side}s:{_shape(t)}" for t in re.findall(r"\S+", other)[-2:]]
    digits = sum(c.isdigit() for c in text)
    x0, y0, x1, y1 = line.box
    names += [
        f"len:{min(len(text) // 4, 10)}",
        f"dig:{round(5 * digits / max(1, len(text)))}",
        f"nt:{min(len(tokens), 6)}",
        f"h:{min(int(20 * (y1 - y0) / max(1, image_height)), 6)}",
        f"empty:{not text}",
    ]
    return names


def features(
    lines: Sequence[Line],
    image_height: int,
    entities: Sequence[dict[str, float]] | None = None,
) -> list[np.ndarray]:
    """Hashed feature indices of each line of one image (unique per line). ``entities``: the
    recognizers' scores of each line, added as features (the ``both`` model)."""
    out = []
    for i, (line, context) in enumerate(zip(lines, context_of(lines))):
        names = feature_names(line, context, image_height)
        if entities is not None:
            names += [f"r:{e}" for e in entities[i]]
            names += [f"r:{e}:{int(4 * v)}" for e, v in entities[i].items()]
        out.append(np.unique([zlib.crc32(n.encode()) % N_FEATURES for n in names]))
    return out


def _design(bags: Sequence[Sequence[np.ndarray]]):
    """A sparse (lines, N_FEATURES) matrix of 1/sqrt(nnz) rows, and each line's bag index."""
    import torch

    rows, cols, vals, owner = [], [], [], []
    n = 0
    for b, bag in enumerate(bags):
        for idx in bag:
            rows += [n] * len(idx)
            cols += idx.tolist()
            vals += [1.0 / np.sqrt(len(idx))] * len(idx)
            owner.append(b)
            n += 1
    x = torch.sparse_coo_tensor(
        torch.tensor([rows, cols], dtype=torch.long),
        torch.tensor(vals, dtype=torch.float32),
        (n, N_FEATURES),
        check_invariants=True,
    ).coalesce()
    return x, torch.tensor(owner, dtype=torch.long)


@dataclass(frozen=True, eq=False)
class LearnedTyper:
    """Weights (N_FEATURES, C), bias (C,), the attributes in column order and the threshold;
    ``uses_entities``: trained with the recognizers' scores as features (the ``both`` model)."""

    attributes: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    threshold: float
    uses_entities: bool = False

    def probabilities(
        self,
        lines: Sequence[Line],
        image_height: int,
        entities: Sequence[dict[str, float]] | None = None,
    ) -> np.ndarray:
        """(lines, C) line probabilities before calibration."""
        if not len(lines):
            return np.zeros((0, len(self.attributes)), np.float32)
        if self.uses_entities and entities is None:
            raise ValueError("this line typer takes the recognizers' entity scores")
        bags = features(lines, image_height, entities if self.uses_entities else None)
        z = np.stack([self.weights[idx].sum(0) / np.sqrt(len(idx)) for idx in bags])
        return 1.0 / (1.0 + np.exp(-(z + self.bias)))

    def scores(
        self,
        lines: Sequence[Line],
        image_height: int,
        entities: Sequence[dict[str, float]] | None = None,
    ) -> list[dict[str, float]]:
        """Attribute -> calibrated score (0.5 at the threshold) of each line."""
        p = np.clip(self.probabilities(lines, image_height, entities), 1e-7, 1 - 1e-7)
        t = np.clip(self.threshold, 1e-4, 1 - 1e-4)
        shift = np.log(t / (1 - t))
        s = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) - shift)))
        return [dict(zip(self.attributes, map(float, row))) for row in s]


def save_typers(path: str | Path, typers: dict[str, LearnedTyper]) -> None:
    """An .npz file of named typers (``learned``, ``both``): arrays and a JSON header."""
    from privobfnet.io import atomic_path

    meta = {
        "format": FORMAT,
        "n_features": N_FEATURES,
        "typers": {
            name: {
                "attributes": list(t.attributes),
                "threshold": t.threshold,
                "uses_entities": t.uses_entities,
            }
            for name, t in typers.items()
        },
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for name, t in typers.items():
        arrays[f"{name}_weights"] = t.weights.astype(np.float16)
        arrays[f"{name}_bias"] = np.asarray(t.bias, np.float32)
    # np.savez stamps each member with the clock: written by hand with a fixed date, the same
    # typers give the same bytes (DVC compares outputs by their md5)
    with atomic_path(Path(path)) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, array in arrays.items():
                member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                archive.writestr(member, buffer.getvalue())


def load_typers(path: str | Path) -> dict[str, LearnedTyper]:
    """The named typers of a file written by ``save_typers``; errors name the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: line typer not found") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a line typer file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT or meta.get("n_features") != N_FEATURES:
        raise ValueError(f"{path}: line typer format {meta.get('format')!r}, expected {FORMAT!r}")
    out = {}
    for name, info in meta["typers"].items():
        weights = arrays[f"{name}_weights"].astype(np.float32)
        if weights.shape != (N_FEATURES, len(info["attributes"])):
            raise ValueError(
                f"{path}: {name} weights of shape {weights.shape} for "
                f"{len(info['attributes'])} attributes"
            )
        out[name] = LearnedTyper(
            tuple(info["attributes"]),
            weights,
            arrays[f"{name}_bias"],
            float(info["threshold"]),
            bool(info["uses_entities"]),
        )
    return out


def train_mil(
    bags: Sequence[Sequence[np.ndarray]],
    labels: np.ndarray,
    *,
    epochs: int,
    lr: float,
    l2: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the line model so the noisy-OR over each bag's lines predicts the bag's labels.

    ``bags``: per image, its lines' feature indices; ``labels``: (images, C) 0/1. Images without
    lines are left out (nothing could explain a label). Full-batch Adam; returns (weights, bias).
    """
    import torch

    keep = [i for i, bag in enumerate(bags) if len(bag)]
    if not keep:
        raise ValueError("no image has a detected line: nothing to learn the line typer from")
    x, owner = _design([bags[i] for i in keep])
    y = torch.tensor(np.asarray(labels, np.float32)[keep])
    generator = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(N_FEATURES, y.shape[1], generator=generator)).requires_grad_()
    prior = y.mean(0).clamp(1e-3, 1 - 1e-3)
    b = torch.log(prior / (1 - prior)).clone().requires_grad_()  # start at the label frequency
    optimizer = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        z = torch.sparse.mm(x, w) + b
        log_none = torch.zeros_like(y).index_add_(0, owner, -torch.nn.functional.softplus(z))
        log_any = torch.log(-torch.expm1(log_none.clamp(max=-1e-6)))
        loss = -(y * log_any + (1 - y) * log_none).mean() + l2 * (w * w).sum()
        loss.backward()
        optimizer.step()
    return w.detach().numpy(), b.detach().numpy()


def choose_threshold(
    bag_probabilities: Sequence[np.ndarray], labels: np.ndarray, grid: Sequence[float]
) -> tuple[float, float]:
    """The threshold of ``grid`` with the best image-level macro F1 (max over an image's lines).

    ``bag_probabilities``: per image its (lines, C) probabilities. Returns (threshold, macro F1).
    """
    c = labels.shape[1]
    top = np.stack([p.max(0) if len(p) else np.zeros(c) for p in bag_probabilities])
    best = (float(grid[0]), -1.0)
    for t in grid:
        pred = top >= t
        tp = (pred & (labels > 0)).sum(0)
        f1 = 2 * tp / np.maximum(1, pred.sum(0) + (labels > 0).sum(0))
        present = (labels > 0).any(0)
        macro = float(f1[present].mean()) if present.any() else 0.0
        if macro > best[1]:
            best = (float(t), macro)
    return best
