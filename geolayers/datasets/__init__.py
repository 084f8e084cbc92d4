"""Readers for real data shipped with installed packages, and procedural generators.

Nothing here downloads at run time.
"""

from geolayers.datasets.mnist import load_mnist_sample, mnist_sample_path
from geolayers.datasets.musae import (
    FACEBOOK_CLASSES,
    TWITCH_CLASSES,
    TWITCH_COUNTRIES,
    load_musae_facebook,
    load_musae_twitch,
)

__all__ = [
    "FACEBOOK_CLASSES",
    "TWITCH_CLASSES",
    "TWITCH_COUNTRIES",
    "load_mnist_sample",
    "load_musae_facebook",
    "load_musae_twitch",
    "mnist_sample_path",
]
