"""The optional model backend of the PII check: Microsoft Presidio with an installed spaCy model.

It adds what patterns cannot find, person names (PERSON) and places and postal addresses (LOCATION). Install
with `pip install 'sluicegate[presidio]'` plus a spaCy model package (for example en_core_web_lg) at deploy
time. Nothing is downloaded at run time: a missing model is a start-up error, because Presidio would
otherwise try to download it on first use.
"""

from __future__ import annotations

from typing import Any

from sluicegate.guardrails.base import Finding

#: our entity names -> Presidio's
PRESIDIO_NAMES = {"PERSON": "PERSON", "LOCATION": "LOCATION"}


class PresidioRecognizer:
    def __init__(
        self, entities: list[str], model: str, language: str, min_score: float, engine: Any | None = None
    ) -> None:
        self.entities = [PRESIDIO_NAMES[entity] for entity in entities]
        self._ours = {theirs: ours for ours, theirs in PRESIDIO_NAMES.items()}
        self.language = language
        self.min_score = min_score
        #: tests pass a stand-in with Presidio's `analyze(text=, language=, entities=)` signature
        self.engine = engine if engine is not None else _load_engine(model, language)

    def analyze(self, text: str) -> list[Finding]:
        results = self.engine.analyze(text=text, language=self.language, entities=self.entities)
        return [
            Finding(self._ours[result.entity_type], result.start, result.end)
            for result in results
            if result.score >= self.min_score and result.entity_type in self._ours
        ]


def _load_engine(model: str, language: str) -> Any:
    try:
        import spacy.util
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError:
        raise ValueError(
            ".backend: presidio needs the extra: pip install 'sluicegate[presidio]' and a spaCy model"
        ) from None
    if not spacy.util.is_package(model):
        raise ValueError(
            f".presidio_model: the spaCy model '{model}' is not installed; install it with the deployment "
            "(it is never downloaded at run time)"
        )
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": language, "model_name": model}]}
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=[language])
