"""Procedural content sources: dead-leaves pictures (Achddou et al. 2021).

Only 16 photographs ship with our dependencies; dead leaves add endless pictures with the edge,
occlusion and scale statistics of natural images, written as ordinary PNG sources.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deblur_cli.atomic import replaced_file


def _leaf_radii(rng: np.random.Generator, count: int, low: float, high: float) -> np.ndarray:
    """Radii with density ~ r^-3 on [low, high]: the scale-invariant law of natural images."""
    u = rng.random(count)
    return (low**-2 - u * (low**-2 - high**-2)) ** -0.5


def _leaf_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour, mostly muted as in photographs, now and then saturated."""
    value = rng.uniform(0.05, 0.95)
    saturation = rng.beta(1.2, 3.0)
    hue = rng.uniform(0, 2 * np.pi)
    tint = np.cos(hue + np.array([0.0, 2.094, 4.189]))
    return np.clip(value * (1 + saturation * tint), 0.0, 1.0)


def _leaf_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Texture for one leaf: none, a grating (stripes, fabric) or band-limited noise."""
    kind = rng.choice(3, p=(0.4, 0.3, 0.3))
    if kind == 0:
        return np.zeros((h, w), np.float32)
    amplitude = rng.uniform(0.03, 0.25)
    if kind == 1:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 40.0)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        wave = np.sin(phase)
        if rng.integers(0, 2):  # half the gratings are rectified: bright bars on a base
            wave = np.abs(wave)
        return (amplitude * wave).astype(np.float32)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    sigma = rng.uniform(0.5, 4.0)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return amplitude * noise / (noise.std() + 1e-6)


def dead_leaves_image(
    rng: np.random.Generator, size: int = 768, coverage: float = 5.0
) -> np.ndarray:
    """A dead-leaves picture (HxWx3 uint8): occluding discs, boxes and triangles, some textured.

    Photographs are scarce offline (16 ship with our dependencies) and a network trained on them
    learns their few textures. Dead leaves have the edge, occlusion and scale statistics of
    natural images with endless variety (Achddou et al., "Synthetic images as a regularity prior
    for image restoration neural networks", 2021). Drawn at twice the size and reduced, so that
    edges are anti-aliased like a camera's, not stair-stepped.
    """
    big = 2 * size
    image = np.empty((big, big, 3), np.float32)
    image[:] = _leaf_colour(rng)
    # Enough leaves to cover the picture ``coverage`` times over (mean area of the r^-3 law),
    # so the background colour hardly ever shows; leaves under 2.5 output px would not show.
    low, high = 5.0, max(0.4 * big, 6.0)
    mean_area = np.pi * 2 * low**2 * np.log(high / low) / (1 - (low / high) ** 2)
    leaves = int(np.ceil(coverage * big * big / mean_area))
    for radius in _leaf_radii(rng, leaves, low, high):
        r = int(np.ceil(radius))
        cy, cx = rng.integers(-r // 2, big + r // 2, 2)
        top, left = max(cy - r, 0), max(cx - r, 0)
        bottom, right = min(cy + r + 1, big), min(cx + r + 1, big)
        if bottom <= top or right <= left:
            continue
        mask = np.zeros((bottom - top, right - left), np.uint8)
        centre = (int(cx - left), int(cy - top))
        shape = rng.choice(3, p=(0.6, 0.25, 0.15))
        if shape == 0:
            cv2.circle(mask, centre, r, 1, -1)
        else:
            corners = 4 if shape == 1 else 3
            angles = rng.uniform(0, 2 * np.pi) + np.sort(rng.uniform(0, 2 * np.pi, corners))
            if corners == 4:
                angles = rng.uniform(0, 2 * np.pi) + np.array([0, 0.5, 1, 1.5]) * np.pi
                angles += rng.uniform(-0.4, 0.4, 4)
            points = np.stack([np.cos(angles), np.sin(angles)], -1) * radius + centre
            cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
        region = image[top:bottom, left:right]
        colour = _leaf_colour(rng)
        texture = _leaf_texture(rng, *mask.shape)
        fill = np.clip(colour + texture[..., None] * (0.5 + colour), 0.0, 1.0)
        inside = mask.astype(bool)
        region[inside] = fill[inside]
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)


def write_dead_leaves(folder: Path, count: int, seed: int = 0, size: int = 768) -> list[Path]:
    """Write ``count`` dead-leaves pictures as PNG sources (kept if already there); their paths.

    Picture k depends only on (seed, k), so a folder can be topped up or regenerated exactly.
    """
    paths = []
    for index in range(count):
        path = Path(folder) / f"dead_leaves_{seed}_{index:04d}.png"
        if not path.exists():
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDEAD, index]))
            rgb = dead_leaves_image(rng, size)
            with replaced_file(path) as tmp:
                tmp.write_bytes(cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
        paths.append(path)
    return paths
