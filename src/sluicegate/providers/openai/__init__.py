from sluicegate.providers.openai.adapter import AzureOpenAIProvider, OpenAIProvider

__all__ = ["AzureOpenAIProvider", "OpenAIProvider"]
