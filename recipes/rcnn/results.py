"""One image's detections: the JSON the CLI writes and the drawing."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from caffe_compat.recipes.rcnn.labels import display_name


@dataclass
class ImageDetections:
    """Detections of one image, best first: boxes (M, 4) float (xmin, ymin, xmax, ymax),
    scores (M,), 0-based class indices (M,), and the class names they index."""
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str]
    image: str = ""
    image_size: Tuple[int, int] = (0, 0)   # (height, width)
    num_proposals: int = 0

    def __len__(self) -> int:
        return len(self.scores)

    def names(self) -> List[str]:
        return [display_name(self.class_names[int(k)]) for k in self.labels]

    def to_json(self) -> dict:
        """``{"image", "height", "width", "proposals", "detections": [{"class", "label",
        "score", "box"}]}``; ``class`` is the 0-based index, ``label`` its display name."""
        return {"image": self.image, "height": int(self.image_size[0]),
                "width": int(self.image_size[1]), "proposals": int(self.num_proposals),
                "detections": [{"class": int(k), "label": name, "score": round(float(s), 5),
                                "box": [round(float(v), 2) for v in b]}
                               for k, name, s, b in zip(self.labels, self.names(), self.scores,
                                                        self.boxes)]}


def draw_detections(image: np.ndarray, detections: ImageDetections, path: str, *,
                    dpi: int = 100, fontsize: int = 10) -> str:
    """Write ``image`` (RGB, uint8 or floats in [0, 1]) with labelled boxes to ``path``
    (PNG/JPEG by extension) using GluonCV's ``plot_bbox`` on a matplotlib Agg canvas."""
    from gluoncv.utils.viz import plot_bbox
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    names = [display_name(n) for n in detections.class_names]
    plot_bbox(img.astype(np.float32), np.asarray(detections.boxes, np.float64).reshape(-1, 4),
              scores=np.asarray(detections.scores, np.float64),
              labels=np.asarray(detections.labels, np.float64), class_names=names,
              thresh=-np.inf, ax=ax, linewidth=2.0, fontsize=fontsize)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
