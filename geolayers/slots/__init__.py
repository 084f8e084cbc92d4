"""Object-centric layers: slot attention and invariant slot attention with slot-centric
reference frames, the encoder and decoder around them, and their training loop.

* :class:`SlotAttention`: Locatello et al. 2020, with the implicit-gradient option of
  Chang et al. 2022;
* :class:`InvariantSlotAttention`: Biza et al. 2023, modes ``"T"``, ``"TS"``, ``"TSR"``; its
  frames are the functions :func:`relative_grid` (and its affine form :func:`frame_map`,
  :func:`project_relative_grid`) and :func:`pose_from_attention`;
* :class:`CNNEncoder`, :class:`SpatialBroadcastDecoder`, :class:`SlotAutoencoder`;
* :func:`train_slot_autoencoder`, :func:`predict`.

Coordinates are ``(x, y)`` in ``[-1, 1]`` at pixel centres (:func:`position_grid`).
"""

from geolayers.slots.attention import SlotAttention, SlotAttentionOutput
from geolayers.slots.autoencoder import KINDS, AutoencoderOutput, SlotAutoencoder
from geolayers.slots.decoder import DecoderOutput, SpatialBroadcastDecoder
from geolayers.slots.encoder import CNNEncoder
from geolayers.slots.frames import (
    MODES,
    SlotPose,
    frame_map,
    pose_from_attention,
    position_grid,
    project_relative_grid,
    relative_grid,
    rotation_angle,
    rotation_matrix,
    sample_pose,
)
from geolayers.slots.invariant import InvariantSlotAttention
from geolayers.slots.training import (
    TrainingLog,
    flip_rows_and_permute_channels,
    predict,
    train_slot_autoencoder,
    warmup_cosine,
)

__all__ = [
    "KINDS",
    "MODES",
    "AutoencoderOutput",
    "CNNEncoder",
    "DecoderOutput",
    "InvariantSlotAttention",
    "SlotAttention",
    "SlotAttentionOutput",
    "SlotAutoencoder",
    "SlotPose",
    "SpatialBroadcastDecoder",
    "TrainingLog",
    "flip_rows_and_permute_channels",
    "frame_map",
    "pose_from_attention",
    "position_grid",
    "predict",
    "project_relative_grid",
    "relative_grid",
    "rotation_angle",
    "rotation_matrix",
    "sample_pose",
    "train_slot_autoencoder",
    "warmup_cosine",
]
