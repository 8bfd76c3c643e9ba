"""Write-ups for people: tw.report's HTML and Markdown (``reporting``, matplotlib figures), the binned weight
distributions and stored integer levels that the report and the Studio's weight view plot (``histograms``, numpy
only), and the words and plots for each layer's quantization (``quantization``: layer errors, levels).

Imports ``techniques``, ``plan``, ``model``, ``pipeline``, ``tflite`` and ``errors``; only ``widgets`` and the CLI
import it.
"""
