"""The study figures, one module per figure family, drawn by `emogrid figures` (emogrid.report.plots).

Importing the package selects matplotlib's Agg backend (files only, no display), before any
module of it imports pyplot.
"""

import matplotlib

matplotlib.use("Agg")
