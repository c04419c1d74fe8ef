"""Draw spdesk's icon (a shield over a photo frame) with Pillow: PNG sizes and a Windows .ico.

Run: python installer/make_icon.py  (writes resources/icons/spdesk-*.png and spdesk.ico)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "icons"
SIZES = (16, 32, 48, 64, 128, 256, 512)


def draw(size: int) -> Image.Image:
    scale = 4  # draw large, then downsample for smooth edges
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    pad = s * 0.06
    d.rounded_rectangle([pad, pad, s - pad, s - pad], radius=s * 0.2, fill=(37, 99, 235, 255))
    # A photo: sky, sun and a mountain inside a white frame.
    f0, f1 = s * 0.2, s * 0.8
    d.rounded_rectangle([f0, s * 0.26, f1, s * 0.74], radius=s * 0.05, fill=(255, 255, 255, 255))
    d.rectangle([f0 + s * 0.04, s * 0.30, f1 - s * 0.04, s * 0.70], fill=(191, 219, 254, 255))
    d.ellipse([s * 0.30, s * 0.35, s * 0.40, s * 0.45], fill=(251, 191, 36, 255))
    d.polygon(
        [(f0 + s * 0.04, s * 0.70), (s * 0.45, s * 0.46), (s * 0.62, s * 0.70)],
        fill=(30, 64, 175, 255),
    )
    # The shield, bottom right.
    cx, top, w = s * 0.70, s * 0.52, s * 0.26
    shield = [
        (cx - w / 2, top),
        (cx + w / 2, top),
        (cx + w / 2, top + w * 0.55),
        (cx, top + w * 1.05),
        (cx - w / 2, top + w * 0.55),
    ]
    d.polygon(shield, fill=(16, 185, 129, 255), outline=(255, 255, 255, 255), width=int(s * 0.02))
    tick = [
        (cx - w * 0.22, top + w * 0.45),
        (cx - w * 0.04, top + w * 0.62),
        (cx + w * 0.24, top + w * 0.25),
    ]
    d.line(tick, fill=(255, 255, 255, 255), width=int(s * 0.035), joint="curve")
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images = {size: draw(size) for size in SIZES}
    for size, image in images.items():
        image.save(OUT / f"spdesk-{size}.png")
    images[256].save(OUT / "spdesk.ico", sizes=[(n, n) for n in SIZES if n <= 256])
    print(f"icons written to {OUT}")


if __name__ == "__main__":
    main()
