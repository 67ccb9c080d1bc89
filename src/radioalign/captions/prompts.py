"""The two prompts of the study, exactly as the authors sent them (REFERENCE §2).

``control`` is one user text. ``curated`` is an instruction sent as the first
content part (not as a system instruction), then the image, then a query; the
authors' ``gemini_generate_captions.py`` sends ``[instruction, image, query]``
and, for control, an empty instruction part, which is left out here because the
API rejects an empty text part and it carries nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CONTROL_QUERY = "Please use 50 words or less to write a caption describing this image."

CURATED_INSTRUCTION = (
    "You are acting as an expert observational radio astronomer. Examine the following image and "
    "describe it in a concise manner. Look for bright centroids of flux and where in the image "
    "(left, right, top, bottom, center) they are located. Are there any lobes or jets associated "
    "with the flux centroids? From where do they originate and where do they end? Are there any "
    "sources in the image that are not associated with the central galaxy? Only describe "
    "morphology, leaving out any assumptions about the nature of the emission. Use 50 words or less."
)
CURATED_QUERY = "Please use the above instructions to describe this image."


@dataclass(frozen=True)
class Prompt:
    """One prompt as content parts: ``instruction`` (before the image, may be empty) and ``query`` (after)."""

    name: str
    instruction: str
    query: str

    @property
    def text(self) -> str:
        """The whole prompt as one string (instruction, blank line, query)."""
        return f"{self.instruction}\n\n{self.query}" if self.instruction else self.query

    @property
    def sha256(self) -> str:
        """Hash of the parts (stored with every caption so a changed prompt is never mixed in)."""
        return hashlib.sha256(f"{self.instruction}\x00{self.query}".encode()).hexdigest()


PROMPT_SPECS: dict[str, Prompt] = {
    "control": Prompt("control", "", CONTROL_QUERY),
    "curated": Prompt("curated", CURATED_INSTRUCTION, CURATED_QUERY),
}

#: The exact prompt texts: ``PROMPTS["control"]`` and ``PROMPTS["curated"]`` (instruction, blank line, query).
PROMPTS: dict[str, str] = {name: spec.text for name, spec in PROMPT_SPECS.items()}


def get_prompt(name: str) -> Prompt:
    try:
        return PROMPT_SPECS[name]
    except KeyError:
        raise ValueError(f"prompt must be one of {sorted(PROMPT_SPECS)}, got {name!r}") from None
