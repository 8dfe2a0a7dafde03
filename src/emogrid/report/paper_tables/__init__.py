"""The paper tables, one module per table, written by `emogrid aggregate` through
`emogrid.report.tables.write_tables`: each renders its numbers as CSV, Markdown and booktabs LaTeX.
"""
