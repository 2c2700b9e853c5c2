from .helpers import _clear_calls, calls, recorder  # noqa: F401  (fixtures)
