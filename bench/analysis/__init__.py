"""Reading records: formatting (fmt, a leaf), columns declared once, the comparison frame,
stats, multipliers, the scaling law, tuning's choice, probe sections, tables, plots, report.
Nothing here trains; everything reads records only."""
