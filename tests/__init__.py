from pathlib import Path

# Test fixtures shipped with the repository (sources and licences: tests/data/README.md).
DATA = Path(__file__).resolve().parent / "data"
