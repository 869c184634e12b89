"""Documents: the plain, torch-free records every stage hands on and every format renders, with schema versions."""

from convaudit.documents.records import *  # noqa: F403
from convaudit.documents.records import __all__  # noqa: F401
