"""Classical optical flow for the network's input: motion hints and neighbour alignment.

Blur is motion during the exposure: a pixel's blur follows the path the image moved while the
shutter was open. Classical video deblurring (Cho et al. 2012; Kim & Lee 2015) derives each
frame's blur from the motion between frames. A small network that has to infer the blur from the
pixels alone (blind deblurring) learns slowly; told the motion, it faces a nearly non-blind
problem. So a model can ask for two extra input planes: the centre frame's motion in pixels per
frame, measured by OpenCV's DIS flow between the blurry frames themselves (nothing but the input
is needed, at training and at run time alike).

A model can also ask for its neighbours to be warped onto the centre frame (alignment), as
flow-based video deblurring does (DBN "flow", Su et al. 2017), instead of learning the motion.

Both are computed on whole frames by the engine and on slightly larger crops in training, and are
a pure function of the window, so training and inference see the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from deblur_cli.models.dblrnet import DBLRNetConfig

# Hints are motion in px per frame divided by this, so that typical values are within +-1.
HINT_SCALE = 8.0


def _dis() -> cv2.DISOpticalFlow:
    """DIS at its "fast" preset: ~1 ms for 256 x 256, tens of ms for 1080p, on one core."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def _to_u8(plane: np.ndarray) -> np.ndarray:
    return np.clip(plane * 255.0 + 0.5, 0, 255).astype(np.uint8)


def flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """H x W x 2 float32 flow from ``source`` to ``target`` (unit-range luma planes): the pixel
    at (x, y) of ``source`` is found at (x, y) + flow in ``target``."""
    return _dis().calc(_to_u8(source), _to_u8(target), None)


def warp(plane: np.ndarray, flow_to_plane: np.ndarray) -> np.ndarray:
    """Sample ``plane`` at (x, y) + flow: brings it onto the frame the flow starts from."""
    height, width = plane.shape
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(
        plane.astype(np.float32, copy=False),
        grid_x + flow_to_plane[..., 0],
        grid_y + flow_to_plane[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def motion_hints(window: np.ndarray) -> np.ndarray:
    """2 x H x W: the centre frame's motion (dx, dy) in px per frame / HINT_SCALE.

    The central difference of the flows to the previous and the next frame: the velocity at the
    centre frame, in its own pixel grid.
    """
    centre = window.shape[0] // 2
    ahead = flow(window[centre], window[centre + 1])
    behind = flow(window[centre], window[centre - 1])
    velocity = (ahead - behind) / (2.0 * HINT_SCALE)
    return np.ascontiguousarray(velocity.transpose(2, 0, 1), dtype=np.float32)


def aligned(window: np.ndarray) -> np.ndarray:
    """The window with every neighbour warped onto the centre frame (the centre untouched)."""
    centre = window.shape[0] // 2
    out = window.astype(np.float32, copy=True)
    for j in range(window.shape[0]):
        if j != centre:
            out[j] = warp(window[j], flow(window[centre], window[j]))
    return out


def prepare_window(window: np.ndarray, config: DBLRNetConfig) -> np.ndarray:
    """T x H x W blurry window -> the ``config.input_planes`` x H x W planes the network takes."""
    planes = aligned(window) if config.align else window.astype(np.float32, copy=False)
    if not config.motion_hints:
        return planes
    # Hints come from the raw window: alignment would have removed the motion they measure.
    return np.concatenate([planes, motion_hints(window)])


def window_preparer(config: DBLRNetConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """``prepare_window`` bound to ``config``, or None when the model takes raw windows."""
    if not (config.motion_hints or config.align):
        return None
    return partial(prepare_window, config=config)
