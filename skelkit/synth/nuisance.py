"""How much of real recordings' nuisance a synthetic set carries: two named levels.

``none`` is the generator as it was before the nuisance levels existed, bit for bit (its numbers
are the ones in brackets below). ``real`` (the default) widens each range towards what real
recordings show and adds dropped joints, so that raw joint coordinates cannot simply be matched
between people and cameras: what the pre-training invariances are for. Each range, and why:

Performers (one draw per person, ``body.make_performer``)
- ``height_scale`` 0.78-1.12 x a 1.75 m actor (1.37-1.96 m): NTU RGB+D's performers are 10 to 35
  years old, so statures run from children's to tall adults'. (0.88-1.10)
- ``segment_sd`` 8 % per segment (upper arm, forearm, thigh, shoulders, ...): limb-to-stature
  ratios differ between adults by about that much, more between children and adults. (5 %)
- ``gain_sd`` 0.2 and ``tempo_sd`` 0.25 (log): how far and how fast a person habitually moves;
  some wave with the whole arm, some with the hand; some act twice as fast. (0.1, 0.12)
- ``posture`` (habitual stance: torso and head pitch, arm hang, elbow bend, stance width) is NOT
  widened. Tried at about 2.5 times the ranges: it lowered every representation alike (raw fixed
  joints 36.7 -> 33.4 %, CMD tiny 38.9 -> 33.7 %, random init 36.1 -> 26.0 %, KNN on the demo
  store), because CMD's view is aligned on the first frame's spine, which a stoop tilts; it made
  the set harder without telling representations apart.

Takes (``motion.perform``, ``dataset._take_length``)
- ``frames`` 60-150: recording lengths at 30 fps around which a take's length is drawn (NTU
  clips run about 1-10 s, most 2-5 s, idle time included). (40-110)
- ``lead_divisor`` 2.8, ``tail_divisor`` 3.5: the idle time before the action starts (up to
  1/2.8 = 36 % of the clip) and after it ends (up to 29 %). NTU clips start when the operator
  presses record and the performer reacts to a cue, so the action begins anywhere in the first
  third. (1/6 and 1/8)
- ``warp`` 0.9: the within-action speed profile (monotone below 1). (0.6)
- ``timing_sd`` 0.08: when each movement phase starts and ends, as a fraction of the action. (0.05)
- ``take_length_sd`` 0.25 (log): how long the same person takes for the same action. (0.15)

Cameras (``scene.make_rig``, ``scene.camera_pose``)
- ``rig_height`` 0.3-2.6 m and ``aim_sd_deg`` 10: NTU's setups vary the camera height (from a
  low tripod to a high mount) and the operators aimed by eye, so the camera's pitch against the
  floor differs by tens of degrees between setups (15 genuine NTU recordings we checked show
  the spine pitched from -36 to +2 degrees in camera space, from 4 setups only). (0.5-1.5 m, 4)
- ``roll_sd_deg`` 8: the Kinect reports camera-space coordinates, not gravity-aligned ones, and a
  tripod head is rarely levelled; the genuine files show the spine leaning sideways by up to 12
  degrees in camera space. This stands for the camera's roll and the performer's sideways lean
  together, so it is wider than a camera's roll alone is likely to be. (1 degree)
- ``tilt_sd_deg`` 5 and ``azimuth_sd_deg`` 8: each of the three cameras of a setup is placed and
  aimed separately, not exactly at -45/0/+45 degrees. (1.5 and 2 degrees)
  The store's fixed view (IKEM/CrosSCLR feeder) turns the body about the vertical axis only, so
  pitch and roll stay in the raw fixed joints; CMD's sequence view aligns the first frame's spine
  and shoulders, which removes them.

Sensor (``scene.sense``, ``scene.drop_joints``)
- ``joint_sigma`` 8 mm, ``extremity_sigma`` 20 mm: Kinect v2 skeleton jitter, worst on hands and
  feet. (4 mm, 10 mm)
- ``glitch_rate`` 1.5 per body: extremities that jump for a few frames. (0.6)
- ``dropout_rate`` 2.0 per body: a limb end (wrist, hand and fingers, or ankle and foot) is lost
  for 5-30 frames; the sensor keeps reporting it, frozen where it was last seen, flagged as
  inferred (tracking state 1). The genuine files flag 8-19 % of joint readings as inferred; the
  real level flags about 15 %, the none level about 9 %. (no dropouts, and no random numbers
  drawn for them)

The nuisance that every store view removes anyway (the actor's position in the room) is not
widened: it would make the files different, not the task harder.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Nuisance:
    name: str
    height_scale: tuple[float, float]
    segment_sd: float
    gain_sd: float
    tempo_sd: float
    lead_divisor: float
    tail_divisor: float
    warp: float
    timing_sd: float
    take_length_sd: float
    rig_height: tuple[float, float]
    aim_sd_deg: float
    roll_sd_deg: float
    tilt_sd_deg: float
    azimuth_sd_deg: float
    joint_sigma: float
    extremity_sigma: float
    glitch_rate: float
    dropout_rate: float
    posture: tuple[tuple[str, tuple[float, float]], ...]
    """Range of each habitual joint angle (radians), drawn once per performer."""
    frames: tuple[int, int]
    """Recording lengths (frames at 30 fps) a take's length is drawn around."""
    dropout_frames: tuple[int, int] = (5, 31)
    """Length range of a dropout run (high exclusive)."""

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_NONE_POSTURE = (("torso_pitch", (-0.03, 0.12)), ("head_pitch", (-0.1, 0.15)),
                 ("shoulder_abd", (0.03, 0.2)), ("shoulder_flex", (-0.05, 0.15)),
                 ("elbow", (0.05, 0.35)), ("shoulder_rot", (-0.2, 0.2)), ("hip_abd", (0.0, 0.1)))

NUISANCE_LEVELS: dict[str, Nuisance] = {
    "none": Nuisance(
        name="none", height_scale=(0.88, 1.10), segment_sd=0.05, gain_sd=0.1, tempo_sd=0.12,
        lead_divisor=6, tail_divisor=8, warp=0.6, timing_sd=0.05, take_length_sd=0.15,
        rig_height=(0.5, 1.5), aim_sd_deg=4.0, roll_sd_deg=1.0, tilt_sd_deg=1.5,
        azimuth_sd_deg=2.0, joint_sigma=0.004, extremity_sigma=0.010, glitch_rate=0.6,
        dropout_rate=0.0,
        posture=_NONE_POSTURE, frames=(40, 110),
    ),
    "real": Nuisance(
        name="real", height_scale=(0.78, 1.12), segment_sd=0.08, gain_sd=0.2, tempo_sd=0.25,
        lead_divisor=2.8, tail_divisor=3.5, warp=0.9, timing_sd=0.08, take_length_sd=0.25,
        rig_height=(0.3, 2.6), aim_sd_deg=10.0, roll_sd_deg=8.0, tilt_sd_deg=5.0,
        azimuth_sd_deg=8.0, joint_sigma=0.008, extremity_sigma=0.020, glitch_rate=1.5,
        dropout_rate=2.0, posture=_NONE_POSTURE, frames=(60, 150),
    ),
}
DEFAULT_NUISANCE = "real"


def nuisance_level(name: str | Nuisance) -> Nuisance:
    if isinstance(name, Nuisance):
        return name
    if name not in NUISANCE_LEVELS:
        raise ValueError(f"unknown nuisance level {name!r}; choose one of "
                         f"{', '.join(NUISANCE_LEVELS)}")
    return NUISANCE_LEVELS[name]
