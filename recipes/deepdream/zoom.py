"""The notebook's zoom sequence: dream, save, zoom in a little, dream again.

    from caffe_compat.recipes.deepdream import FastDreamer, load_image, zoom_sequence
    dreamer = FastDreamer.from_zoo("bvlc_googlenet")
    result = zoom_sequence(dreamer.deepdream, load_image("sky.jpg"), n_frames=100,
                           scale=0.05, out_dir="frames")
    result.frames      # [frames/0000.jpg, ...]   (the notebook's "frames/%04d.jpg")
    result.video       # frames/zoom.mp4 with imageio-ffmpeg installed, else zoom.gif

imageio's ffmpeg plugin needs the optional ``imageio-ffmpeg`` package (not a
dependency of caffe-compat: ``pip install imageio-ffmpeg`` to get mp4s); without it the
frames go into an animated GIF with Pillow, which every install has.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import scipy.ndimage as nd

from caffe_compat.recipes.deepdream.images import PathLike, save_image, to_uint8


def zoom_frame(frame: np.ndarray, s: float = 0.05, scipy_before_0_18: bool = False) -> np.ndarray:
    """The notebook's zoom: scale (H, W, 3) by 1/(1-s) about the centre, same size.

    The notebook's call, ``nd.affine_transform(frame, [1-s,1-s,1], [h*s/2,w*s/2,0],
    order=1)``, samples input ``(1-s)*o + offset`` on SciPy >= 0.18 (a centred zoom).
    SciPy < 0.18, which the notebook met in 2015, read a 1-D matrix as
    ``(1-s)*(o + offset)``, drifting the centre by ``s*s*h/2`` pixels per frame;
    ``scipy_before_0_18=True`` reproduces those frames.
    """
    h, w = frame.shape[:2]
    offset = np.array([h*s/2, w*s/2, 0])
    if scipy_before_0_18:
        offset = offset * (1-s)
    with warnings.catch_warnings():   # SciPy's note about that 0.18 change
        warnings.simplefilter("ignore", UserWarning)
        return nd.affine_transform(frame, [1-s, 1-s, 1], offset, order=1)


def ffmpeg_available() -> bool:
    """True when imageio can write mp4 (the ``imageio-ffmpeg`` package and its binary)."""
    try:
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:   # not installed, or no binary for this platform
        return False


def write_video(frames: list[np.ndarray], path: PathLike, fps: float = 8.0) -> Path:
    """An mp4 of ``frames`` with imageio's ffmpeg plugin (H.264; an odd last row or
    column is dropped, as yuv420p needs even sizes)."""
    import imageio.v2 as imageio
    path = Path(path)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8,
                            macro_block_size=2) as writer:
        for frame in frames:
            h, w = frame.shape[:2]
            writer.append_data(to_uint8(frame[:h - h % 2, :w - w % 2]))
    return path


def write_gif(frames: list[np.ndarray], path: PathLike, fps: float = 8.0) -> Path:
    """An endlessly looping animated GIF of ``frames`` (Pillow)."""
    import PIL.Image
    path = Path(path)
    images = [PIL.Image.fromarray(to_uint8(f)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=0)
    return path


@dataclass
class ZoomResult:
    frames: list = field(default_factory=list)   # paths of the numbered images
    video: Optional[Path] = None                 # the mp4 (or GIF without ffmpeg)
    last: Optional[np.ndarray] = None            # the last dreamed frame


def zoom_sequence(dream: Callable[[np.ndarray], np.ndarray], img: np.ndarray, n_frames: int,
                  scale: float = 0.05, out_dir: PathLike = "frames", pattern: str = "%04d.jpg",
                  video: Optional[str] = "zoom", fps: float = 8.0,
                  on_frame: Optional[Callable[[int, Path], None]] = None) -> ZoomResult:
    """N frames, each dreamed from the previous one zoomed by ``scale``.

    ``dream(frame) -> frame`` is e.g. ``lambda f: deepdream(net, f)`` or
    ``dreamer.deepdream``; frames are written as ``out_dir/pattern % i``; ``video``
    names the movie (``<video>.mp4``, or ``<video>.gif`` without ffmpeg; None: none).
    """
    if n_frames < 1:
        raise ValueError("a zoom sequence needs at least one frame")
    if not 0 <= scale < 1:
        raise ValueError(f"zoom scale must be in [0, 1), got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ZoomResult()
    kept = []
    frame = img
    for frame_i in range(n_frames):
        frame = dream(frame)
        path = save_image(frame, out / (pattern % frame_i))
        result.frames.append(path)
        kept.append(to_uint8(frame))
        if on_frame is not None:
            on_frame(frame_i, path)
        result.last = frame
        frame = zoom_frame(frame, scale)
    if video:
        if ffmpeg_available():
            result.video = write_video(kept, out / f"{video}.mp4", fps)
        else:
            result.video = write_gif(kept, out / f"{video}.gif", fps)
    return result
