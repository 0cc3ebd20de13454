"""The driver process: one Tune run for a manifest's tasks, progress, results, the summary. Imports
no torch."""
