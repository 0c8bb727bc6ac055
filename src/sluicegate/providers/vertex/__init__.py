from sluicegate.providers.vertex.adapter import VertexProvider

__all__ = ["VertexProvider"]
