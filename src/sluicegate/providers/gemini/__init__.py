from sluicegate.providers.gemini.adapter import GeminiProvider

__all__ = ["GeminiProvider"]
