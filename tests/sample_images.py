"""Images that tests of several folders share."""

import numpy as np


def hdr_image(channels=3):
    """Mid gray with three blocks outside [0, 1]: highlights of 1.5 and 4.0, and an out-of-gamut -0.1."""
    image = np.full((32, 40, channels), 0.5, np.float32)
    image[4:14, 4:14], image[4:14, 20:30], image[20:30, 4:14] = 1.5, 4.0, -0.1
    return image
