"""Writing a benchmark's results: the JSON document and the markdown report, side by side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def rounded(value: Any) -> Any:
    """Floats to 4 decimals (10 ms CPU ticks make more digits noise)."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def write_results(out_dir: Path, stem: str, doc: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """`<stem>.json` and `<stem>.md` in out_dir; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(rounded(doc), indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
