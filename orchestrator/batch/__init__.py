"""Batch translation on Ray Data: `python -m orchestrator translate` (commands/translate.py).

stores.py lists, reads and writes a folder or an S3 prefix; plan.py decides what to translate;
stages.py holds what runs on the cluster (decode tasks, the translating actors, the writer, and
the one-actor pipeline of CPU workers);
job.py streams the images through them; report.py keeps the counts and `_translation.json`.
"""
