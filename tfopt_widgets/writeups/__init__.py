"""Write-ups for people: tw.report's HTML and Markdown (``reporting``, matplotlib figures) and the binned weight
distributions that the report and the Studio's weight view plot (``histograms``, numpy only).

Imports ``techniques``, ``plan``, ``model`` and ``errors``; only ``widgets`` and the CLI import it.
"""
