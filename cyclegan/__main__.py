import sys

from .commands import entry_point

sys.exit(entry_point())
