from sluicegate.providers.cohere.adapter import CohereProvider

__all__ = ["CohereProvider"]
