"""One run over several images (Upscale All Open Images): each image's share of the one progress bar, and
the message that names the images left out and why.

Standard library only: GIMP's side is in all_images.py and gimp_adapter.py.
"""

from __future__ import annotations

import dataclasses

PREFIX = "InvSR: "  # how the single run's progress texts begin (flow.progress_update, procedure.upscale_image)


@dataclasses.dataclass(frozen=True)
class Share:
    """An image's part of the bar: from `start`, `width` long (fractions of the whole run)."""

    start: float
    width: float


def shares(work: list[int]) -> list[Share]:
    """Each image's part of the bar, in proportion to its work (its tiles); equal parts when none has any."""
    weights = [max(0, amount) for amount in work]
    total = sum(weights)
    if total == 0:
        weights, total = [1] * len(work), len(work)
    parts, start = [], 0.0
    for weight in weights:
        parts.append(Share(start, weight / total))
        start += weight / total
    return parts


class PartProgress:
    """The progress of one image, shown on the bar of the whole run: its fractions within the image's share,
    its texts told which image they are about ("InvSR: image 2/3: tile 4/9")."""

    def __init__(self, progress, share: Share, label: str):
        self.progress, self.share, self.label = progress, share, label

    def update(self, fraction: float | None, text: str) -> None:
        whole = None if fraction is None else self.share.start + self.share.width * max(0.0, min(1.0, fraction))
        self.progress.update(whole, self.labelled(text))

    def text(self, text: str) -> None:
        self.progress.text(self.labelled(text))

    def done(self) -> None:
        """The image is finished: the bar at its share's end."""
        self.progress.update(self.share.start + self.share.width, f"{PREFIX}{self.label}: done")

    def labelled(self, text: str) -> str:
        rest = text[len(PREFIX) :] if text.startswith(PREFIX) else text
        return f"{PREFIX}{self.label}: {rest}"


def left_out_text(left_out: list[tuple[str, str]], done: int) -> str:
    """The one message at the end of a run: which images were not upscaled and why, and how many were."""
    upscaled = "No image was upscaled." if done == 0 else f"{done} of {done + len(left_out)} images were upscaled."
    reasons = "\n".join(f"• {name}: {reason}" for name, reason in left_out)
    return f"{upscaled} Not upscaled:\n{reasons}"
