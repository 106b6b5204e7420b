"""Multiplication-free integer CNN inference engine: op table, reference, model file, C runtime."""
from .graph import Graph, ModelError, Node, Tensor
from .native import BackendError
from .runtime import InputError, Model, from_graph, load

__all__ = ["BackendError", "Graph", "InputError", "Model", "ModelError", "Node", "Tensor", "from_graph", "load"]
