from sluicegate.providers.bedrock.adapter import BedrockProvider

__all__ = ["BedrockProvider"]
