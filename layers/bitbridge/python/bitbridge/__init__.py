"""bitbridge core: the shared package every Lambda function imports (shipped as a layer).

Modules are imported lazily by the handlers that need them, so a handler pays only for
what it uses at cold start.
"""

__version__ = "0.1.0"
