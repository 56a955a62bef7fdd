"""Prints where the demo's report is (`make demo` calls this after the job)."""
from pipelines.resources import default_storage_root
from pathlib import Path

if __name__ == "__main__":
    report = Path(default_storage_root()) / "reports" / "report.md"
    print(f"\nReport: {report}" if report.exists() else f"\nNo report at {report}: the demo job did not finish")
    if report.exists():
        print(report.read_text())
