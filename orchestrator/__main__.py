from orchestrator.commands import entry_point

raise SystemExit(entry_point())
