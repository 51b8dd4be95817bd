"""Prompt templates ("a photo of a {c}."): the sets zero-shot evaluation averages over, and the
set training may wrap knowledge-graph names in (`data.template_chance`), so that a model meets at
evaluation the prompts it saw in training.

    openai   the 80 ImageNet templates of the CLIP paper (shipped in entitynet/data/)
    photo    8 photo templates
    bare     the class name alone
    FILE     one template per line, each with {c}
"""

from __future__ import annotations

from pathlib import Path

from entitynet.errors import ConfigError

TEMPLATE_SETS = ("openai", "photo", "bare")
_PHOTO = (
    "a photo of a {c}.",
    "a photo of the {c}.",
    "a close-up photo of a {c}.",
    "a good photo of a {c}.",
    "a photo of a small {c}.",
    "a photo of a large {c}.",
    "a picture of a {c}.",
    "an image of a {c}.",
)
_OPENAI = Path(__file__).resolve().parent.parent / "data" / "openai_imagenet_templates.txt"


def read_templates(name_or_path: str) -> list[str]:
    """A named template set or a file of templates (see the module docstring)."""
    if name_or_path == "bare":
        return ["{c}"]
    if name_or_path == "photo":
        return list(_PHOTO)
    if name_or_path == "openai":
        return _OPENAI.read_text(encoding="utf-8").splitlines()
    try:
        lines = [x.strip() for x in Path(name_or_path).read_text(encoding="utf-8").splitlines() if x.strip()]
    except OSError as e:
        raise ConfigError(
            f"templates {name_or_path}: {e.strerror}; use {', '.join(TEMPLATE_SETS)} or a file of lines with {{c}}"
        ) from None
    if not lines or any("{c}" not in x for x in lines):
        raise ConfigError(f"templates file {name_or_path} needs one template per line, each with {{c}}")
    return lines


def fill(template: str, name: str) -> str:
    """The template with the name in its place (only `{c}` is replaced; other braces stay)."""
    return template.replace("{c}", name)
