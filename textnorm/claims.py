"""Checks of what a chapter's hand-written words rely on.

A chapter's generated text is right for any parameters; its hand-written prose (headings, the
reasons given for a design) may rest on what the default run found, e.g. "the gold control rises".
``Claims`` checks such findings where they are stated: with the default parameters a failed check is
an error (the committed chapter would say something false), with other parameters it is a warning
that names the sentence that no longer holds, and the chapter goes on.

    claims = Claims(strict=on_defaults)
    claims.check(gold_rises, "the gold judge as the reward raises gold (the optimiser works)")
"""

from __future__ import annotations

import warnings


class ClaimWarning(UserWarning):
    """A hand-written statement of a chapter does not hold for the parameters it was run with."""


class Claims:
    def __init__(self, strict: bool) -> None:
        self.strict = bool(strict)
        self.failed: list[str] = []

    def check(self, ok: bool, claim: str) -> bool:
        """Whether ``claim`` holds; when it does not: AssertionError if strict, else a ClaimWarning."""
        if bool(ok):
            return True
        self.failed.append(claim)
        message = f"does not hold for these parameters: {claim}"
        if self.strict:
            raise AssertionError(message)
        warnings.warn(message, ClaimWarning, stacklevel=2)
        return False
