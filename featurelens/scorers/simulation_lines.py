"""The all-at-once simulation prompt's line formats: what one window token costs.

In the all-at-once mode every test token is a line ``token<TAB>placeholder`` and the
simulator's prediction is read from the prompt log-probabilities at the position after
the tab. The placeholder and the window separators are most of the bill, so the layout
is an option (``line_format``):

- ``dense``: ``tok<TAB>?`` lines, windows separated by a blank line, all of a
  prompt's windows inside one ``<texts>`` block. ``<TAB>?<NL>`` is two tokens in o200k,
  cl100k, Llama 3 and Qwen 3 (``?\\n`` and ``?\\n\\n`` are single tokens), so a window
  token costs three tokens instead of four and a window boundary costs nothing.
  SmolLM2's tokenizer keeps ``\\t``, ``?`` and ``\\n`` apart, as it did for ``unknown``.
- ``terse`` (default): ``dense`` lines under a shorter instruction
  (``prompts.ALL_AT_ONCE_TERSE_INTRO``): the shared prefix is 106 o200k tokens instead
  of 127, paid once a round. ``dense`` keeps its own instruction so its scores and cached
  answers stay reproducible (the cache keys on the prompt text, so the two never mix).
- ``openai``: OpenAI's original layout, ``tok<TAB>unknown`` lines with every window in
  its own ``<example>`` tags, byte for byte what featurelens sent before ``dense``; kept
  so earlier scores and cached answers can be reproduced.

The read marker is the tab in both: the value is predicted at the token after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.core.errors import FeaturelensError
from featurelens.llm.window_text import neutralise
from featurelens.scorers import prompts

#: Separator after which a value is predicted (the prompt log-prob read position).
READ_MARKER = "\t"


@dataclass(frozen=True)
class LineFormat:
    """How an all-at-once prompt writes its explanation and windows."""

    name: str
    intro: str
    placeholder: str
    open: str  #: before a prompt's windows
    between: str  #: between two windows
    close: str  #: after the last window

    def block(self, windows: list[list[str]]) -> str:
        """Windows (each a list of ``token<TAB>value`` lines) in this format's separators."""
        return self.open + self.between.join("\n".join(lines) for lines in windows) + self.close

    def parts(self, explanation: str, windows: list[list[str]]) -> tuple[str, list[str]]:
        """The shared prefix (identical for every feature) and the lines after it, to join
        with newlines: the prompt for ``windows`` of tokens is ``shared + "\\n".join(rest)``."""
        tokens, values = prompts.SIMULATION_SHOT
        shot = [f"{neutralise(t)}{READ_MARKER}{v}" for t, v in zip(tokens, values)]
        shared = "\n".join([self.intro, "", prompts.explanation_line(prompts.SIMULATION_SHOT_EXPLANATION),
                            self.block([shot]), "", ""])
        target = [[f"{neutralise(t)}{READ_MARKER}{self.placeholder}" for t in window] for window in windows]
        return shared, [prompts.explanation_line(explanation), self.block(target)]


FORMATS = {
    "terse": LineFormat("terse", prompts.ALL_AT_ONCE_TERSE_INTRO, prompts.PLACEHOLDER,
                        "<texts>\n", "\n\n", "\n</texts>"),
    "dense": LineFormat("dense", prompts.ALL_AT_ONCE_DENSE_INTRO, prompts.PLACEHOLDER,
                        "<texts>\n", "\n\n", "\n</texts>"),
    "openai": LineFormat("openai", prompts.ALL_AT_ONCE_INTRO, prompts.UNKNOWN,
                         "<example>\n", "\n</example>\n<example>\n", "\n</example>"),
}

#: Every placeholder some format writes (offline simulators answer each).
PLACEHOLDERS = frozenset(f.placeholder for f in FORMATS.values())


def line_format(name: str) -> LineFormat:
    """The format called ``name``, or one sentence naming the choices."""
    found = FORMATS.get(str(name).strip().lower())
    if found is None:
        raise FeaturelensError(f"Simulation line_format {name!r} is unknown; use "
                               f"{' or '.join(FORMATS)} (-o line_format=terse).")
    return found
