"""Language models behind one protocol: generate and score."""

from reer.models.base import (
    Generation,
    GenerationRequest,
    LanguageModel,
    ScoreRequest,
)

__all__ = ["Generation", "GenerationRequest", "LanguageModel", "ScoreRequest"]
