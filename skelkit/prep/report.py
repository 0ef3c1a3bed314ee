"""The build report: what a build read, wrote and skipped (stored as attrs["report"])."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from skelkit.prep.tasks import Discovery


def build_report(
    *,
    dataset: str,
    raw: Path,
    frames: int,
    discovery: Discovery,
    samples_written: int,
    skipped: list[dict[str, Any]],
    seconds: float,
    files_done: int,
    bytes_done: int,
    workers: int,
    scheduler: str,
    batch_size: int,
    batches: int,
    resumed: bool,
    missing_list: str | None,
) -> dict[str, Any]:
    """JSON-safe report; ``skipped`` holds every left-out sample as {name, file, line, reason}."""
    rate = (lambda x: round(x / seconds, 3)) if seconds > 0 else (lambda x: None)
    return {
        "dataset": dataset,
        "raw": str(Path(raw).resolve()),
        "frames": frames,
        "files_found": discovery.files_found,
        "files_excluded_other_dataset": discovery.excluded,
        "files_parsed": files_done,
        "samples_found": discovery.num_samples + len(discovery.skipped),
        "samples_written": samples_written,
        "samples_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(s["kind"] for s in skipped).items())),
        "seconds": round(seconds, 3),
        "files_per_second": rate(files_done),
        "raw_megabytes": round(bytes_done / 1e6, 3),
        "megabytes_per_second": rate(bytes_done / 1e6),
        "workers": workers,
        "scheduler": scheduler,
        "batch_size": batch_size,
        "batches": batches,
        "resumed": resumed,
        "missing_list": missing_list,
        "skipped": skipped,
    }


def format_report(report: dict[str, Any], max_skipped: int = 10) -> str:
    """A few human-readable lines for the terminal."""
    lines = [
        f"{report.get('dataset')}: {report.get('samples_written')} samples written from "
        f"{report.get('files_found')} files in {report.get('seconds')} s "
        f"({report.get('files_per_second')} files/s, {report.get('megabytes_per_second')} MB/s, "
        f"{report.get('scheduler')})",
    ]
    if report.get("files_excluded_other_dataset"):
        lines.append(f"excluded (another dataset): {report['files_excluded_other_dataset']} files")
    skipped = report.get("skipped", [])
    if skipped:
        counts = ", ".join(f"{k} {v}" for k, v in report.get("skipped_by_reason", {}).items())
        lines.append(f"skipped: {len(skipped)} samples ({counts})")
        for s in skipped[:max_skipped]:
            where = f"{s['file']}:{s['line']}" if s.get("line") else s["file"]
            lines.append(f"  {s['name']}: {where}: {s['reason']}")
        if len(skipped) > max_skipped:
            lines.append(f"  ... and {len(skipped) - max_skipped} more (skelprep info --json)")
    return "\n".join(lines)
