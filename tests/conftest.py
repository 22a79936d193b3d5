import sys
from pathlib import Path

# The helpers (faketree, fakenvml) are plain modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
