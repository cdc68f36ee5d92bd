"""Recognition of detected lines: PP-OCRv6's small recogniser (``PP-OCRv6_rec_small.onnx``, shipped
in the rapidocr wheel beside the detector) on each line's crop, with word boxes.

The crop is taken from the image at its own size, straightened by the polygon's rectangle
(rapidocr's ``get_rotate_crop_image``, as its own pipeline does); the recogniser resizes it to its
48-pixel input height. Both text backends (rapidocr, PaddleOCR) detect with the same model and read
with this one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from privobfnet.text.lines import Line

REC_MODEL_FILE = "PP-OCRv6_rec_small.onnx"


def _quad(polygon: np.ndarray) -> np.ndarray:
    """The polygon's minimum-area rectangle as 4 points, clockwise from the top left."""
    import cv2

    rect = cv2.minAreaRect(np.asarray(polygon, np.float32).reshape(-1, 2))
    points = cv2.boxPoints(rect)
    # order: top-left, top-right, bottom-right, bottom-left (x + y smallest first)
    s, d = points.sum(1), np.diff(points, axis=1).ravel()
    return np.array(
        [points[np.argmin(s)], points[np.argmin(d)], points[np.argmax(s)], points[np.argmax(d)]],
        np.float32,
    )


class LineReader:
    """Reads the text of given line polygons in an (H, W, 3) uint8 RGB image."""

    def __init__(self, *, threads: int = 1):
        from rapidocr import RapidOCR

        from privobfnet.masks.text import rapidocr_model_path

        model = rapidocr_model_path().parent / REC_MODEL_FILE
        self._engine = RapidOCR(
            params={
                "Global.use_cls": False,
                "Global.log_level": "error",
                "Det.model_path": str(rapidocr_model_path()),
                "Rec.model_path": str(model),
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        self._rec = self._engine._load_rec_model()

    def __call__(self, image: np.ndarray, polygons: Sequence[np.ndarray]) -> list[Line]:
        """One ``Line`` per polygon, in order (text "" and score 0 where nothing was read)."""
        from rapidocr.ch_ppocr_rec import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image

        if not len(polygons):
            return []
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        quads = [_quad(p) for p in polygons]
        crops = [get_rotate_crop_image(bgr, q) for q in quads]
        keep = [i for i, c in enumerate(crops) if c.size and min(c.shape[:2]) >= 2]
        out = [Line(np.asarray(p, np.float64).reshape(-1, 2)) for p in polygons]
        if not keep:
            return out
        result = self._rec(TextRecInput(img=[crops[i] for i in keep], return_word_box=True))
        words_of = self._word_boxes([crops[i] for i in keep], [quads[i] for i in keep], result)
        for j, i in enumerate(keep):
            text = str(result.txts[j]).strip()
            out[i] = Line(
                out[i].polygon,
                text,
                float(result.scores[j]) if text else 0.0,
                words_of[j] if text else (),
            )
        return out

    def _word_boxes(self, crops, quads, result) -> list[tuple]:
        """Each line's (word, box) pairs in image pixels; words without boxes split on spaces."""
        try:
            mapped = self._engine.cal_rec_boxes(crops, np.array(quads), result, False)
            lines = []
            for words in mapped.word_results:
                pairs = []
                for text, _score, box in words:
                    if box is None:
                        continue
                    pts = np.asarray(box, np.float64).reshape(-1, 2)
                    pairs.append((str(text), (*pts.min(0).tolist(), *pts.max(0).tolist())))
                lines.append(tuple(pairs))
            if len(lines) == len(crops):
                return lines
        except Exception:  # rapidocr's word-box step fails on some crops: boxes are optional
            pass
        return [
            tuple((w, tuple(float(v) for v in (*q.min(0), *q.max(0)))) for w in str(t).split())
            for t, q in zip(result.txts, quads)
        ]
