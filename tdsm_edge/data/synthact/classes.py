"""The synthact class catalogue: 53 actions built as (primitive, body part, side) compositions.

Every class is a motion primitive applied to a body part on a side (or in a direction). The
structured record is what the compositional zero-shot splits are checked against; the name and
the one-sentence description are the class text given to the text encoder.

`side` is the body side for limbs ("left", "right", "both"), the direction for the torso, the head
and whole-body steps ("left", "right", "forward", "back"), or "none". Left and right are the
subject's own (NTU convention).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import DataError

PRIMITIVES = (
    "raise",
    "wave",
    "circle",
    "punch",
    "reach",
    "swing",
    "clap",
    "touch head",
    "shake",
    "kick",
    "stomp",
    "jump",
    "bend",
    "turn",
    "squat",
    "step",
)
PARTS = ("arm", "hand", "leg", "head", "torso", "body")
SIDES = ("left", "right", "both", "none", "forward", "back")


@dataclass(frozen=True)
class ActionClass:
    """One action class.

    Attributes:
        index: global 0-based class index (the label y).
        name: short natural-language label, e.g. "kick with left leg".
        description: one sentence describing the motion.
        primitive: motion primitive, one of PRIMITIVES.
        part: body part it is applied to, one of PARTS.
        side: side or direction, one of SIDES.
    """

    index: int
    name: str
    description: str
    primitive: str
    part: str
    side: str


# (name, description, primitive, part, side); the order fixes the global indices.
_TABLE: tuple[tuple[str, str, str, str, str], ...] = (
    # arm / hand
    (
        "raise left arm",
        "A person lifts the left arm forward and up until it points overhead, then lowers it.",
        "raise",
        "arm",
        "left",
    ),
    (
        "raise right arm",
        "A person lifts the right arm forward and up until it points overhead, then lowers it.",
        "raise",
        "arm",
        "right",
    ),
    (
        "raise both arms",
        "A person lifts both arms up above the head at the same time and brings them back down.",
        "raise",
        "arm",
        "both",
    ),
    (
        "wave left hand",
        "A person holds the left hand up beside the head and sways the forearm from side to side in greeting.",
        "wave",
        "hand",
        "left",
    ),
    (
        "wave right hand",
        "A person holds the right hand up beside the head and sways the forearm from side to side in greeting.",
        "wave",
        "hand",
        "right",
    ),
    (
        "wave both hands",
        "A person lifts both hands beside the head and sways both forearms from side to side.",
        "wave",
        "hand",
        "both",
    ),
    (
        "circle left arm",
        "A person swings the straight left arm around the shoulder in full circles.",
        "circle",
        "arm",
        "left",
    ),
    (
        "circle right arm",
        "A person swings the straight right arm around the shoulder in full circles.",
        "circle",
        "arm",
        "right",
    ),
    (
        "circle both arms",
        "A person swings both straight arms around the shoulders in full circles like a windmill.",
        "circle",
        "arm",
        "both",
    ),
    (
        "punch with left fist",
        "A person raises the fists and drives the left fist straight forward, twisting the shoulders into the blow.",
        "punch",
        "arm",
        "left",
    ),
    (
        "punch with right fist",
        "A person raises the fists and drives the right fist straight forward, twisting the shoulders into the blow.",
        "punch",
        "arm",
        "right",
    ),
    (
        "reach out with left arm",
        "A person slowly stretches the left arm out in front to reach for something, leaning the upper body forward.",
        "reach",
        "arm",
        "left",
    ),
    (
        "reach out with right arm",
        "A person slowly stretches the right arm out in front to reach for something, leaning the upper body forward.",
        "reach",
        "arm",
        "right",
    ),
    (
        "swing left arm",
        "A person lets the left arm swing back and forth from the shoulder like a pendulum.",
        "swing",
        "arm",
        "left",
    ),
    (
        "swing right arm",
        "A person lets the right arm swing back and forth from the shoulder like a pendulum.",
        "swing",
        "arm",
        "right",
    ),
    (
        "clap hands",
        "A person brings both hands together in front of the chest several times, clapping.",
        "clap",
        "hand",
        "both",
    ),
    (
        "touch head with left hand",
        "A person lifts the left hand to the side of the head and keeps it there for a moment.",
        "touch head",
        "hand",
        "left",
    ),
    (
        "touch head with right hand",
        "A person lifts the right hand to the side of the head and keeps it there for a moment.",
        "touch head",
        "hand",
        "right",
    ),
    (
        "touch head with both hands",
        "A person puts both hands on the head, elbows out to the sides, and then lowers them.",
        "touch head",
        "hand",
        "both",
    ),
    (
        "shake left hand",
        "A person holds the left forearm in front of the body and shakes the hand quickly up and down.",
        "shake",
        "hand",
        "left",
    ),
    (
        "shake right hand",
        "A person holds the right forearm in front of the body and shakes the hand quickly up and down.",
        "shake",
        "hand",
        "right",
    ),
    # leg
    (
        "raise left leg",
        "A person lifts the left knee up in front of the hip, holds it, and puts the foot back down.",
        "raise",
        "leg",
        "left",
    ),
    (
        "raise right leg",
        "A person lifts the right knee up in front of the hip, holds it, and puts the foot back down.",
        "raise",
        "leg",
        "right",
    ),
    (
        "kick with left leg",
        "A person swings the left leg forward and up from the hip, striking with the foot.",
        "kick",
        "leg",
        "left",
    ),
    (
        "kick with right leg",
        "A person swings the right leg forward and up from the hip, striking with the foot.",
        "kick",
        "leg",
        "right",
    ),
    (
        "swing left leg",
        "A person standing on the right foot swings the left leg forward and back from the hip.",
        "swing",
        "leg",
        "left",
    ),
    (
        "swing right leg",
        "A person standing on the left foot swings the right leg forward and back from the hip.",
        "swing",
        "leg",
        "right",
    ),
    (
        "circle left leg",
        "A person standing on the right foot moves the left leg around in circles from the hip.",
        "circle",
        "leg",
        "left",
    ),
    (
        "circle right leg",
        "A person standing on the left foot moves the right leg around in circles from the hip.",
        "circle",
        "leg",
        "right",
    ),
    (
        "stomp left foot",
        "A person lifts the left foot a little and stamps it down hard on the floor, again and again.",
        "stomp",
        "leg",
        "left",
    ),
    (
        "stomp right foot",
        "A person lifts the right foot a little and stamps it down hard on the floor, again and again.",
        "stomp",
        "leg",
        "right",
    ),
    (
        "hop on left leg",
        "A person bends the right knee to lift that foot and bounces up and down on the left leg.",
        "jump",
        "leg",
        "left",
    ),
    (
        "hop on right leg",
        "A person bends the left knee to lift that foot and bounces up and down on the right leg.",
        "jump",
        "leg",
        "right",
    ),
    (
        "shake left leg",
        "A person lifts the left foot slightly off the floor and shakes the lower leg quickly.",
        "shake",
        "leg",
        "left",
    ),
    (
        "shake right leg",
        "A person lifts the right foot slightly off the floor and shakes the lower leg quickly.",
        "shake",
        "leg",
        "right",
    ),
    # head
    ("nod head", "A person tips the head forward and back up a few times, nodding yes.", "bend", "head", "none"),
    ("shake head", "A person turns the head left and right a few times, shaking it no.", "shake", "head", "none"),
    (
        "turn head to the left",
        "A person turns the head to look over the left shoulder and then faces forward again.",
        "turn",
        "head",
        "left",
    ),
    (
        "turn head to the right",
        "A person turns the head to look over the right shoulder and then faces forward again.",
        "turn",
        "head",
        "right",
    ),
    ("circle head", "A person rolls the head around in slow circles on the neck.", "circle", "head", "none"),
    # torso
    (
        "bend forward",
        "A person bends the upper body forward from the hips with the arms hanging down, then straightens up.",
        "bend",
        "torso",
        "forward",
    ),
    (
        "bend to the left",
        "A person leans the upper body sideways to the left and comes back upright.",
        "bend",
        "torso",
        "left",
    ),
    (
        "bend to the right",
        "A person leans the upper body sideways to the right and comes back upright.",
        "bend",
        "torso",
        "right",
    ),
    (
        "turn torso to the left",
        "A person twists the upper body to the left while the hips and feet stay in place.",
        "turn",
        "torso",
        "left",
    ),
    (
        "turn torso to the right",
        "A person twists the upper body to the right while the hips and feet stay in place.",
        "turn",
        "torso",
        "right",
    ),
    ("circle torso", "A person moves the upper body around in circles over the hips.", "circle", "torso", "none"),
    # whole body
    (
        "squat down",
        "A person bends both knees and lowers the hips towards the floor with the arms forward, then stands up.",
        "squat",
        "body",
        "none",
    ),
    (
        "jump in place",
        "A person crouches and springs straight up off both feet, landing on the same spot.",
        "jump",
        "body",
        "none",
    ),
    (
        "turn around",
        "A person turns the whole body around on the spot with small steps until facing the other way.",
        "turn",
        "body",
        "none",
    ),
    ("step forward", "A person takes one step forward and stops there.", "step", "body", "forward"),
    ("step back", "A person takes one step backwards and stops there.", "step", "body", "back"),
    ("step to the left", "A person takes one step sideways to the left and stops there.", "step", "body", "left"),
    ("step to the right", "A person takes one step sideways to the right and stops there.", "step", "body", "right"),
)

CLASSES: tuple[ActionClass, ...] = tuple(ActionClass(i, *row) for i, row in enumerate(_TABLE))
NUM_CLASSES = len(CLASSES)


def class_names() -> list[str]:
    """The K class names in global index order."""
    return [c.name for c in CLASSES]


def class_descriptions() -> list[str]:
    """The K one-sentence descriptions in global index order."""
    return [c.description for c in CLASSES]


def find_class(key: str | int) -> ActionClass:
    """A class by global index (int or digit string) or by exact name (case-insensitive).

    Raises:
        DataError: no such class.
    """
    if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
        i = int(key)
        if 0 <= i < NUM_CLASSES:
            return CLASSES[i]
        raise DataError(f"class index {i} is out of range: synthact has {NUM_CLASSES} classes (0..{NUM_CLASSES - 1}).")
    wanted = str(key).strip().lower()
    for c in CLASSES:
        if c.name == wanted:
            return c
    raise DataError(
        f"synthact has no class named {key!r}. List the classes with: python -m tdsm_edge.data.synthact --list"
    )
