"""`python -m bench.report DIR`: the report rebuilt from records (bench.analysis.report)."""

from bench.analysis.report import main

if __name__ == "__main__":
    raise SystemExit(main())
